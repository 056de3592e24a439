//! [`SyncPolicy`], [`RecoveryMode`], and the limits both engines check.

use std::time::Duration;

use crate::error::{Error, Result};

/// When writes become durable. Each variant says what survives a power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// A write returns after the fsync that covers it: everything acknowledged survives, and
    /// other threads see a write only once it is durable. Concurrent writers share fsyncs
    /// (group commit).
    Always,
    /// A background thread syncs every interval: a power cut loses at most about that much.
    /// Writes are visible at once (readers may see what a power cut takes back).
    Interval(Duration),
    /// Nothing is synced until the store's `sync` or `close`; writes are visible at once.
    Never,
}

/// What open does with damaged bytes. The same three modes as the WAL's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryMode {
    /// Default. Damage at the end of the newest written file with nothing proven durable
    /// after it (what a crash mid-write leaves) is a torn tail: cut and reported. Damage
    /// anywhere else is [`Error::Corruption`](crate::Error::Corruption) naming file and offset.
    #[default]
    TolerateTornTail,
    /// Any damage, even a torn tail, is an error.
    Strict,
    /// Salvage: skip damaged ranges, keep every valid record, report what was skipped. Use to
    /// rescue data, not in normal operation.
    SkipCorrupt,
}

/// Checks the limits both engines document on their `Options`: files of 4 KiB..=4 GiB
/// (offsets are 32-bit), key + value below 4 GiB, a non-zero sync interval.
pub fn check_limits(
    max_file_bytes: u64,
    max_key_bytes: u32,
    max_value_bytes: u32,
    sync: SyncPolicy,
) -> Result<()> {
    if !(4096..=u64::from(u32::MAX)).contains(&max_file_bytes) {
        return Err(Error::InvalidOptions(format!(
            "max_file_bytes {max_file_bytes} is not in 4 KiB..=4 GiB"
        )));
    }
    if u64::from(max_key_bytes) + u64::from(max_value_bytes) >= u64::from(u32::MAX) {
        return Err(Error::InvalidOptions(format!(
            "max_key_bytes + max_value_bytes must stay below 4 GiB (offsets are 32-bit), got {max_key_bytes} + {max_value_bytes}"
        )));
    }
    if let SyncPolicy::Interval(d) = sync
        && d.is_zero()
    {
        return Err(Error::InvalidOptions("sync interval must be > 0".into()));
    }
    Ok(())
}

/// The largest batch a file can take: a batch never straddles files, and offsets are 32-bit
/// (room is left for the file header and the seal, so a file holding one batch is never
/// longer than the format allows).
pub fn max_batch_bytes(max_file_bytes: u64) -> u64 {
    let overhead = (crate::format::FILE_HEADER_LEN + crate::format::RECORD_HEADER_LEN) as u64;
    max_file_bytes.max(u64::from(u32::MAX) / 2) - overhead
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FILE_HEADER_LEN, RECORD_HEADER_LEN};

    /// A file holding one batch of the largest size, with its header and seal, stays within
    /// the format's bound: a clean close never makes a file the next open refuses.
    #[test]
    fn the_largest_batch_fits_a_file_with_its_header_and_seal() {
        for max_file in [4096, 64 << 20, u64::from(u32::MAX)] {
            let file =
                FILE_HEADER_LEN as u64 + max_batch_bytes(max_file) + RECORD_HEADER_LEN as u64;
            assert!(file <= crate::MAX_FILE_LEN, "{max_file}: {file}");
        }
    }
}
