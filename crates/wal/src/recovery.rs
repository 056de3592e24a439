//! Opening a log: scan every segment, validate it, and decide what damage means.
//!
//! Policy (see [`RecoveryMode`]): only a *genuine tail* is repaired: damage in the last segment
//! with no valid record anywhere after it, which is what a crash mid-append leaves. The repair
//! (truncation) is synced before the log is used. Damage followed by valid records, or in any
//! segment but the last, is corruption and an error naming the file and offset. I/O errors are
//! never tolerated.
//!
//! Why only the last segment can be torn: rotation syncs the old segment completely before the
//! new one is created, so no byte is written to a segment while its predecessor has unsynced
//! data.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable_fs::{Access, DurableFs, File};

use crate::error::{CorruptionKind, Error, Result};
use crate::format::{
    BATCH_CONTINUES, DecodeError, HeaderError, Lsn, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
    SegmentHeader, decode_record, parse_segment_name,
};
use crate::options::RecoveryMode;

/// A byte range of a segment holding only valid, complete records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Extent {
    pub start: u64,
    pub end: u64,
}

/// One segment as the log knows it.
#[derive(Clone, Debug)]
pub(crate) struct SegmentMeta {
    pub first_lsn: Lsn,
    pub path: PathBuf,
    pub salt: u32,
    pub file: Arc<File>,
    /// Usually one extent; more only after `SkipCorrupt` salvage.
    pub extents: Vec<Extent>,
    /// LSN of the last valid record, if any.
    pub last_lsn: Option<Lsn>,
}

/// What recovery found and did. Returned by [`Wal::recovery_report`](crate::Wal::recovery_report).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments in the log after recovery.
    pub segments: usize,
    /// Valid records found.
    pub records: u64,
    /// LSN of the first record, if any.
    pub first_lsn: Option<Lsn>,
    /// LSN of the last record, if any.
    pub last_lsn: Option<Lsn>,
    /// A torn tail that was cut off, if there was one.
    pub truncated_tail: Option<Damage>,
    /// Ranges skipped by [`RecoveryMode::SkipCorrupt`].
    pub skipped: Vec<Damage>,
    /// Segment files removed because their creation was torn (empty or cut-short header).
    pub removed_torn_segments: Vec<PathBuf>,
}

/// A damaged byte range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub path: PathBuf,
    /// Where the damage starts.
    pub offset: u64,
    /// How many bytes were dropped or skipped.
    pub len: u64,
    /// What was wrong at `offset`.
    pub kind: CorruptionKind,
}

/// The scan of one segment's bytes.
struct Scan {
    header: SegmentHeader,
    extents: Vec<Extent>,
    last_lsn: Option<Lsn>,
    records: u64,
    /// Damage at the end to cut off (torn tail), with the offset to cut at.
    cut: Option<(u64, CorruptionKind)>,
    skipped: Vec<(u64, u64, CorruptionKind)>,
}

/// Looks for any valid record starting after `from`: a record with a plausible LSN, a length
/// within the limit, and a matching checksum. Only plausible headers are checksummed, so this
/// stays cheap on large garbage.
fn next_valid_record(
    bytes: &[u8],
    from: usize,
    salt: u32,
    max: u32,
    min_lsn: Lsn,
) -> Option<usize> {
    let max_lsn = min_lsn.saturating_add(bytes.len() as u64 / RECORD_HEADER_LEN as u64 + 1);
    let last_start = bytes.len().checked_sub(RECORD_HEADER_LEN)?;
    (from..=last_start).find(|&p| {
        let Some(rest) = bytes.get(p..) else {
            return false;
        };
        let lsn = crate::format::peek_lsn(rest);
        matches!(lsn, Some(l) if l >= min_lsn && l <= max_lsn)
            && matches!(decode_record(rest, salt, max), Ok(r) if r.lsn >= min_lsn)
    })
}

/// The highest `synced_lsn` of any valid record after `from` (with an LSN of at least
/// `min_lsn`); 0 if there is none.
fn max_synced_lsn_after(bytes: &[u8], from: usize, salt: u32, max: u32, min_lsn: Lsn) -> Lsn {
    let mut best = 0;
    let mut p = from;
    while let Some(found) = next_valid_record(bytes, p, salt, max, min_lsn) {
        if let Ok(r) = decode_record(bytes.get(found..).unwrap_or_default(), salt, max) {
            best = best.max(r.synced_lsn);
        }
        p = found + 1;
    }
    best
}

fn scan_segment(
    bytes: &[u8],
    path: &Path,
    name_lsn: Lsn,
    max: u32,
    mode: RecoveryMode,
    next_first_lsn: Option<Lsn>,
) -> Result<Scan> {
    let is_last = next_first_lsn.is_none();
    let corrupt = |offset: u64, kind: CorruptionKind| Error::Corruption {
        path: path.to_path_buf(),
        offset,
        kind,
    };
    let header = match SegmentHeader::decode(bytes) {
        Ok(h) => h,
        Err(HeaderError::UnsupportedVersion(version)) => {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        Err(e) => return Err(corrupt(0, e.into())),
    };
    if header.first_lsn != name_lsn {
        return Err(corrupt(
            16,
            CorruptionKind::NameMismatch {
                name_lsn,
                header_lsn: header.first_lsn,
            },
        ));
    }
    let mut scan = Scan {
        header,
        extents: Vec::new(),
        last_lsn: None,
        records: 0,
        cut: None,
        skipped: Vec::new(),
    };
    let mut extent_start = SEGMENT_HEADER_LEN;
    let mut pos = SEGMENT_HEADER_LEN;
    // End of the last complete batch, and its LSN: what survives if the tail is cut.
    let mut complete_end = pos;
    let mut complete_lsn: Option<Lsn> = None;
    let mut expected = header.first_lsn;
    let mut in_batch = false;
    let mut batch_start = pos;
    let mut batch_records = 0u64;
    // Zeros after the last record are preallocated space, not damage.
    let mut zero_tail = false;
    while pos < bytes.len() {
        let rest = bytes.get(pos..).unwrap_or_default();
        let decoded = decode_record(rest, header.salt, max);
        if decoded.is_err() && rest.iter().all(|&b| b == 0) {
            zero_tail = true;
            break;
        }
        let damage = match decoded {
            Ok(r) if r.lsn == expected => {
                if !in_batch {
                    batch_start = pos;
                }
                in_batch = r.flags & BATCH_CONTINUES != 0;
                pos += r.encoded_len();
                expected += 1;
                batch_records += 1;
                if !in_batch {
                    scan.records += batch_records;
                    batch_records = 0;
                    complete_end = pos;
                    complete_lsn = Some(r.lsn);
                }
                continue;
            }
            Ok(r) => CorruptionKind::LsnMismatch {
                expected,
                found: r.lsn,
            },
            Err(DecodeError::Truncated { .. }) => CorruptionKind::TruncatedRecord,
            Err(e) => e.into(),
        };
        let damage_at = if in_batch { batch_start } else { pos };
        let later = next_valid_record(bytes, pos + 1, header.salt, max, expected);
        match mode {
            RecoveryMode::Strict => return Err(corrupt(pos as u64, damage)),
            RecoveryMode::TolerateTornTail => {
                // Valid records after the damage are a torn tail too if none of them was
                // written after the damaged one was known durable: the disk persisted pages of
                // the unsynced window out of order, and nothing from the damage on was ever
                // acknowledged. One written after it was durable proves corruption.
                let durable_before_later = later.is_some()
                    && max_synced_lsn_after(bytes, pos + 1, header.salt, max, expected) >= expected;
                if !is_last || durable_before_later {
                    return Err(corrupt(pos as u64, damage));
                }
                scan.cut = Some((damage_at as u64, damage));
                break;
            }
            RecoveryMode::SkipCorrupt => {
                // An incomplete batch before the damage is dropped with it.
                in_batch = false;
                batch_records = 0;
                if complete_end > extent_start {
                    scan.extents.push(Extent {
                        start: extent_start as u64,
                        end: complete_end as u64,
                    });
                }
                match later {
                    Some(p) => {
                        scan.skipped
                            .push((damage_at as u64, (p - damage_at) as u64, damage));
                        let lsn =
                            decode_record(bytes.get(p..).unwrap_or_default(), header.salt, max)
                                .map(|r| r.lsn)
                                .unwrap_or(expected);
                        expected = lsn;
                        pos = p;
                        extent_start = p;
                        complete_end = p;
                    }
                    None if is_last => {
                        scan.cut = Some((damage_at as u64, damage));
                        extent_start = complete_end;
                        break;
                    }
                    None => {
                        let len = (bytes.len() - damage_at) as u64;
                        scan.skipped.push((damage_at as u64, len, damage));
                        extent_start = complete_end;
                        break;
                    }
                }
            }
        }
    }
    if in_batch && scan.cut.is_none() && next_first_lsn.is_some_and(|n| n > expected) {
        // A segment that ends inside a batch and is followed by an LSN gap was cut there by
        // `truncate_after` (which first starts a segment at the high-water mark, then cuts):
        // the caller asked for exactly these records to stay.
        scan.records += batch_records;
        complete_end = pos;
        complete_lsn = Some(expected - 1);
    } else if in_batch && scan.cut.is_none() && (pos >= bytes.len() || zero_tail) {
        // The log ends inside a batch: all or nothing, so the batch goes.
        let kind = CorruptionKind::IncompleteBatch;
        match mode {
            RecoveryMode::Strict => return Err(corrupt(batch_start as u64, kind)),
            RecoveryMode::TolerateTornTail if !is_last => {
                return Err(corrupt(batch_start as u64, kind));
            }
            RecoveryMode::SkipCorrupt if !is_last => {
                let len = (bytes.len() - batch_start) as u64;
                scan.skipped.push((batch_start as u64, len, kind));
            }
            _ => scan.cut = Some((batch_start as u64, kind)),
        }
    }
    if complete_end > extent_start {
        scan.extents.push(Extent {
            start: extent_start as u64,
            end: complete_end as u64,
        });
    }
    scan.last_lsn = complete_lsn;
    Ok(scan)
}

/// The log's segments after recovery, oldest first, and the report.
pub(crate) struct Recovered {
    pub segments: Vec<SegmentMeta>,
    pub report: RecoveryReport,
    /// The LSN the next append gets.
    pub next_lsn: Lsn,
    /// The last segment cannot take appends (none exists, or its creation was torn and it was
    /// removed): the writer must start a new one at `next_lsn`.
    pub needs_new_segment: bool,
}

/// Scans (and, when `repair`, repairs) the log in `dir`.
pub(crate) fn recover(
    fs: &DurableFs,
    dir: &Path,
    max_record_bytes: u32,
    mode: RecoveryMode,
    repair: bool,
) -> Result<Recovered> {
    let mut names: Vec<(Lsn, PathBuf)> = fs
        .list(dir)?
        .into_iter()
        .filter_map(|n| parse_segment_name(&n).map(|lsn| (lsn, dir.join(n))))
        .collect();
    names.sort();
    let mut report = RecoveryReport::default();
    let mut segments: Vec<SegmentMeta> = Vec::new();
    let count = names.len();
    let firsts: Vec<Lsn> = names.iter().map(|(l, _)| *l).collect();
    let mut next_lsn: Lsn = 1;
    for (i, (name_lsn, path)) in names.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let next_first_lsn = firsts.get(i + 1).copied();
        let access = if is_last && repair {
            Access::ReadWrite
        } else {
            Access::Read
        };
        let file = fs.open(&path, access)?;
        let bytes = file.read_all()?;
        let torn_creation =
            is_last && bytes.len() <= SEGMENT_HEADER_LEN && SegmentHeader::decode(&bytes).is_err();
        if torn_creation && mode != RecoveryMode::Strict {
            // Created, then the crash came before its header was synced (the header may be
            // missing, cut short or torn): it never held a record.
            if repair {
                drop(file);
                fs.remove_file(&path)?;
            }
            report.removed_torn_segments.push(path);
            next_lsn = next_lsn.max(name_lsn);
            continue;
        }
        let scan = scan_segment(
            &bytes,
            &path,
            name_lsn,
            max_record_bytes,
            mode,
            next_first_lsn,
        )?;
        if let Some(prev) = segments.last() {
            let previous_last = prev.last_lsn.unwrap_or(prev.first_lsn.saturating_sub(1));
            if scan.header.first_lsn <= previous_last {
                return Err(Error::Corruption {
                    path,
                    offset: 16,
                    kind: CorruptionKind::SegmentOverlap {
                        previous_last,
                        first: scan.header.first_lsn,
                    },
                });
            }
        }
        for (offset, len, kind) in &scan.skipped {
            report.skipped.push(Damage {
                path: path.clone(),
                offset: *offset,
                len: *len,
                kind: *kind,
            });
        }
        if let Some((offset, kind)) = scan.cut {
            let zeros = bytes.iter().rev().take_while(|&&b| b == 0).count() as u64;
            let dropped = (bytes.len() as u64 - offset).saturating_sub(zeros);
            if repair {
                file.set_len(offset)?;
                if zeros > 0 {
                    // Keep the preallocated size: zeros, not garbage, after the cut.
                    file.set_len(bytes.len() as u64)?;
                }
                file.sync_data()?;
            }
            let damage = Damage {
                path: path.clone(),
                offset,
                len: dropped,
                kind,
            };
            if mode == RecoveryMode::SkipCorrupt {
                report.skipped.push(damage.clone());
            }
            report.truncated_tail = Some(damage);
        }
        report.records += scan.records;
        if report.first_lsn.is_none() {
            report.first_lsn = scan
                .extents
                .first()
                .and_then(|e| {
                    let b = bytes.get(usize::try_from(e.start).ok()?..)?;
                    decode_record(b, scan.header.salt, max_record_bytes).ok()
                })
                .map(|r| r.lsn);
        }
        if scan.last_lsn.is_some() {
            report.last_lsn = scan.last_lsn;
        }
        next_lsn = next_lsn
            .max(scan.header.first_lsn)
            .max(scan.last_lsn.map_or(0, |l| l.saturating_add(1)));
        segments.push(SegmentMeta {
            first_lsn: scan.header.first_lsn,
            path,
            salt: scan.header.salt,
            file: Arc::new(file),
            extents: scan.extents,
            last_lsn: scan.last_lsn,
        });
    }
    report.segments = segments.len();
    let needs_new_segment = segments.is_empty() || !report.removed_torn_segments.is_empty();
    Ok(Recovered {
        segments,
        report,
        next_lsn,
        needs_new_segment,
    })
}
