//! Read-only access: checking a log without repairing it, and reading one that another
//! process may have open.

use std::path::Path;

use durable_fs::DurableFs;

use crate::error::Result;
use crate::format::Lsn;
use crate::options::RecoveryMode;
use crate::reader::Iter;
use crate::recovery::recover;

/// What [`verify`] found in a log it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Segment files.
    pub segments: usize,
    /// Records, every checksum verified.
    pub records: u64,
    /// First LSN, if any record.
    pub first_lsn: Option<Lsn>,
    /// Last LSN, if any record.
    pub last_lsn: Option<Lsn>,
    /// A torn tail of the last segment that an open would cut (bytes written after the last
    /// sync, cut by a crash): not damage; reported, and left on disk.
    pub torn_tail: Option<crate::recovery::Damage>,
    /// Segment files the chain does not list (what a crash left of a truncation or a
    /// rotation; a read-write open removes them): not read, only reported.
    pub unlisted: Vec<std::path::PathBuf>,
    /// Segment files whose creation a crash cut (empty, or a header cut short): they hold no
    /// record; a read-write open removes them. Not damage.
    pub torn_segments: Vec<std::path::PathBuf>,
}

/// Checks every byte of the log in `dir` without changing anything and without taking the
/// lock: the identity file, the segment chain, every segment header and every record. Damage
/// is an [`Error::Corruption`](crate::Error::Corruption) naming the file and offset; a torn
/// tail that an open would cut (only the last segment's unsynced end can be one) is not: it
/// is in [`VerifyReport::torn_tail`].
pub fn verify(fs: &DurableFs, dir: &Path, max_record_bytes: u32) -> Result<VerifyReport> {
    let r = recover_beside_writer(fs, dir, max_record_bytes, RecoveryMode::TolerateTornTail)?;
    Ok(VerifyReport {
        segments: r.segments.len(),
        records: r.report.records,
        first_lsn: r.report.first_lsn,
        last_lsn: r.report.last_lsn,
        torn_tail: r.report.truncated_tail,
        unlisted: r.report.removed_unlisted,
        torn_segments: r.report.removed_torn_segments,
    })
}

/// Iterates the log in `dir` from `from` without taking the lock or repairing anything: a
/// torn tail is skipped (not truncated), mid-log damage is an error as in
/// [`RecoveryMode::TolerateTornTail`].
pub fn read_only_iter(
    fs: &DurableFs,
    dir: &Path,
    from: Lsn,
    max_record_bytes: u32,
) -> Result<Iter> {
    Ok(read_only_open(fs, dir, from, max_record_bytes)?.0)
}

/// [`read_only_iter`], with what the read-only recovery found (a torn tail left out, crash
/// leftovers not read): what a tool prints before the records.
pub fn read_only_open(
    fs: &DurableFs,
    dir: &Path,
    from: Lsn,
    max_record_bytes: u32,
) -> Result<(Iter, crate::recovery::RecoveryReport)> {
    let r = recover_beside_writer(fs, dir, max_record_bytes, RecoveryMode::TolerateTornTail)?;
    Ok((Iter::new(r.segments, from, max_record_bytes), r.report))
}

/// The file at `path` if it is at most `max` bytes long (`None` otherwise, or on any error):
/// what the retry compares, never an unbounded read.
fn kv_read_at_most(fs: &DurableFs, path: &Path, max: u64) -> Option<Vec<u8>> {
    let file = fs.open(path, durable_fs::Access::Read).ok()?;
    if file.len().ok()? > max {
        return None;
    }
    file.read_all().ok()
}

/// A read-only recovery that tolerates a writer working beside it: a rotation or truncation
/// between reading the directory and reading the segment chain (or a segment) changes the
/// chain, and an append in flight changes the last segment's length, so an error seen while
/// either changed is retried (a few times) before it is believed. Damage that stays put is
/// reported as found.
fn recover_beside_writer(
    fs: &DurableFs,
    dir: &Path,
    max_record_bytes: u32,
    mode: RecoveryMode,
) -> Result<crate::recovery::Recovered> {
    // What a writer changes: the chain (rotation, truncation) and the last segment's length
    // (an append in flight, which a strict check would see as a torn record).
    let chain = || {
        let path = dir.join(crate::chain::CHAIN_FILE);
        let last = fs.list(dir).ok().and_then(|names| {
            let name = names
                .into_iter()
                .filter(|n| crate::format::parse_segment_name(n).is_some())
                .max()?;
            fs.open(&dir.join(name), durable_fs::Access::Read)
                .ok()?
                .len()
                .ok()
        });
        let chain = kv_read_at_most(fs, &path, crate::chain::MAX_CHAIN_LEN);
        (chain, last)
    };
    // Only a log: a missing or empty directory, another engine's store or a directory of
    // other files is refused before anything is read.
    fs.require_store(dir, &crate::format::STORE_KIND)??;
    let mut attempts = 0;
    loop {
        let before = chain();
        let r = recover(fs, dir, max_record_bytes, mode, false);
        attempts += 1;
        if r.is_ok() || attempts >= 20 || chain() == before {
            return r;
        }
    }
}
