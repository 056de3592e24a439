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

use durable_fs::{Access, Chunks, DurableFs, File, Source, each_chunk, end_of_nonzero, parent_dir};

use crate::chain::{self, CHAIN_FILE, Link};
use crate::error::{CorruptionKind, Error, Result};
use crate::format::{
    BATCH_CONTINUES, DecodeError, HEADER_FIRST_LSN, HEADER_SALT, HeaderError, Lsn,
    MAX_RECORD_LIMIT, MAX_SEGMENT_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SegmentHeader,
    VERSION, VERSION_1, decode_header, parse_segment_name, peek_lsn, plausible_header,
    segment_name,
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
    /// Format version (from the header): how the records are laid out.
    pub version: u32,
    pub file: Arc<File>,
    /// Usually one extent; more only after `SkipCorrupt` salvage.
    pub extents: Vec<Extent>,
    /// LSN of the last valid record, if any.
    pub last_lsn: Option<Lsn>,
}

/// What recovery found and did. Returned by [`Wal::recovery_report`](crate::Wal::recovery_report).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Payload bytes checksummed while looking for valid records after damage, summed over
    /// segments: at most twice each damaged segment's length plus 1 MiB (the rescan budget),
    /// whatever the bytes hold; 0 for an undamaged log.
    pub rescan_bytes: u64,
    /// Segment files the chain no longer (or not yet) listed: what a crash left of a
    /// truncation or a rotation; removed by a read-write open, only reported by a read-only one.
    pub removed_unlisted: Vec<PathBuf>,
    /// Where the bytes of a cut torn tail were kept (`quarantine/<segment>.<offset>.<crc32>`) before
    /// the cut: recovery never destroys what it cannot prove is garbage. Empty when only
    /// zeros were cut, and for a read-only scan (which cuts nothing).
    pub quarantined: Vec<PathBuf>,
}

/// A damaged byte range.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The records end with a seal.
    sealed: bool,
    /// Payload bytes checksummed looking for records after damage.
    rescan_bytes: u64,
    skipped: Vec<(u64, u64, CorruptionKind)>,
}

/// The valid records after the first damage in a segment, found in one forward pass (so a
/// segment with many damaged places costs one pass, not one per place), with suffix maxima.
#[derive(Debug, Default)]
struct Later {
    /// (offset, lsn) of each valid record found, by offset.
    found: Vec<(u64, Lsn)>,
    /// `max_synced[i]`: the highest `synced_lsn` of records `i..`.
    max_synced: Vec<Lsn>,
    /// The work budget ran out before the end: what lies after is unknown.
    exhausted: bool,
    /// The segment's length.
    len: u64,
    /// Payload bytes checksummed.
    checked: u64,
}

/// Payload bytes the forward pass after damage may checksum per byte of segment (plus
/// [`RESCAN_SLACK`]): what bounds the work a crafted segment can cause.
pub const RESCAN_FACTOR: u64 = 2;
/// Fixed allowance of the forward pass's budget, in bytes.
pub const RESCAN_SLACK: u64 = 1 << 20;

/// One record read from a [`Source`] at an offset (its payload checked, not kept).
struct Found {
    lsn: Lsn,
    synced_lsn: Lsn,
    flags: u32,
    len: u64,
}

impl Found {
    fn is_seal(&self) -> bool {
        self.flags & crate::format::SEAL != 0
    }
}

/// Decodes the record at `pos` of `src`, checking its CRC over the payload a chunk at a time.
fn decode_at(
    src: &mut dyn Source,
    pos: u64,
    salt: u32,
    version: u32,
    max: u32,
) -> Result<std::result::Result<Found, DecodeError>> {
    let mut h = [0u8; RECORD_HEADER_LEN];
    let got = src.get(pos, RECORD_HEADER_LEN)?;
    let n = got.len();
    if let Some(dst) = h.get_mut(..n) {
        dst.copy_from_slice(got);
    }
    let hdr = match decode_header(h.get(..n).unwrap_or_default(), salt, version, max) {
        Ok(hdr) => hdr,
        Err(e) => return Ok(Err(e)),
    };
    let body = pos + RECORD_HEADER_LEN as u64;
    if body + u64::from(hdr.len) > src.len() {
        return Ok(Err(DecodeError::Truncated {
            need: hdr.encoded_len(),
        }));
    }
    let mut hasher = hdr.crc_start(salt, &h);
    each_chunk(src, body, u64::from(hdr.len), |c| hasher.update(c))?;
    if let Err(e) = hdr.crc_matches(hasher) {
        return Ok(Err(e));
    }
    Ok(Ok(Found {
        lsn: hdr.lsn,
        synced_lsn: hdr.synced_lsn,
        flags: hdr.flags,
        len: hdr.encoded_len(),
    }))
}

/// The first byte at or after `from` that is not zero, or the end.
fn first_nonzero(src: &mut dyn Source, from: u64) -> Result<u64> {
    let mut p = from;
    while p < src.len() {
        let chunk = src.get_from(p)?;
        if let Some(i) = chunk.iter().position(|&b| b != 0) {
            return Ok(p + i as u64);
        }
        p += chunk.len().max(1) as u64;
    }
    Ok(src.len())
}

impl Later {
    /// Walks from `from` to the end, a chunk at a time: an O(1) check at each candidate
    /// offset (in format 2 the header CRC; in format 1 a plausible LSN), a full decode only
    /// where it passes, a jump over each valid record, zero runs skipped (no record header
    /// is all zeros: LSNs start at 1).
    fn find(
        src: &mut dyn Source,
        from: u64,
        (salt, version): (u32, u32),
        max: u32,
        min_lsn: Lsn,
    ) -> Result<Later> {
        let len = src.len();
        let mut out = Later {
            len,
            ..Later::default()
        };
        let mut budget = len
            .saturating_mul(RESCAN_FACTOR)
            .saturating_add(RESCAN_SLACK);
        let max_lsn = min_lsn.saturating_add(len / RECORD_HEADER_LEN as u64 + 1);
        let mut synced = Vec::new();
        // A record's flags use the low byte only, so the flags field's top byte is 0: the
        // candidates are found with `memchr`, not tried at every offset.
        let top = (crate::format::RECORD_FLAGS + 3) as u64;
        let header = RECORD_HEADER_LEN as u64;
        let mut p = from;
        while p + header <= len {
            let chunk = src.get_from(p + top)?;
            match memchr::memchr(0, chunk) {
                Some(i) => p += i as u64,
                None => {
                    p += chunk.len().max(1) as u64;
                    continue;
                }
            }
            if p + header > len {
                break;
            }
            if src.get(p, 1)?.first() == Some(&0) {
                let z = first_nonzero(src, p)? - p;
                if z >= header {
                    p += z - (header - 1);
                    continue;
                }
            }
            let h = src.get(p, RECORD_HEADER_LEN)?;
            let lsn_ok = version != VERSION_1
                || peek_lsn(h, version).is_some_and(|l| l >= min_lsn && l <= max_lsn);
            if lsn_ok && plausible_header(h, salt, version, max, len - p - header) {
                let cost = u64::from(crate::format::claimed_len(h));
                if cost > budget {
                    out.exhausted = true;
                    break;
                }
                budget -= cost;
                out.checked += cost;
                if let Ok(r) = decode_at(src, p, salt, version, max)? {
                    out.found.push((p, r.lsn));
                    synced.push(r.synced_lsn);
                    p += r.len;
                    continue;
                }
            }
            p += 1;
        }
        out.max_synced = synced;
        for i in (0..out.max_synced.len().saturating_sub(1)).rev() {
            let next = out.max_synced.get(i + 1).copied().unwrap_or(0);
            if let Some(m) = out.max_synced.get_mut(i) {
                *m = (*m).max(next);
            }
        }
        Ok(out)
    }

    /// The first valid record after `pos`: (index, offset, lsn).
    fn after(&self, pos: u64) -> Option<(usize, u64, Lsn)> {
        let i = self.found.partition_point(|&(o, _)| o <= pos);
        self.found.get(i).map(|&(o, l)| (i, o, l))
    }
}

fn scan_segment(
    src: &mut dyn Source,
    path: &Path,
    name_lsn: Lsn,
    max: u32,
    mode: RecoveryMode,
    next_first_lsn: Option<Lsn>,
) -> Result<Scan> {
    let header = check_header(src.get(0, SEGMENT_HEADER_LEN)?, path, name_lsn)?;
    let len = src.len();
    let mut scan = Scan {
        header,
        extents: Vec::new(),
        last_lsn: None,
        records: 0,
        cut: None,
        sealed: false,
        rescan_bytes: 0,
        skipped: Vec::new(),
    };
    let policy = Policy {
        path,
        mode,
        is_last: next_first_lsn.is_none(),
    };
    let mut c = Cursor::new(header.first_lsn);
    let mut later = None;
    // Zeros after the last record are preallocated space, not damage.
    let mut zero_tail = false;
    while c.pos < len {
        let decoded = decode_at(src, c.pos, header.salt, header.version, max)?;
        if decoded.is_err() && first_nonzero(src, c.pos)? == len {
            zero_tail = true;
            break;
        }
        let damage = match decoded {
            Ok(r) if r.is_seal() && c.in_batch => CorruptionKind::IncompleteBatch,
            Ok(r) if r.is_seal() && r.lsn.saturating_add(1) != c.expected => {
                CorruptionKind::LsnMismatch {
                    expected: c.expected.saturating_sub(1),
                    found: r.lsn,
                }
            }
            Ok(r) if r.is_seal() => {
                c.pos += r.len;
                c.complete_end = c.pos;
                scan.sealed = true;
                continue;
            }
            Ok(r) if r.lsn == c.expected => {
                scan.sealed = false;
                c.take(r.lsn, r.flags & BATCH_CONTINUES != 0, r.len, &mut scan);
                continue;
            }
            Ok(r) => CorruptionKind::LsnMismatch {
                expected: c.expected,
                found: r.lsn,
            },
            Err(DecodeError::Truncated { .. }) => CorruptionKind::TruncatedRecord,
            Err(e) => e.into(),
        };
        if later.is_none() {
            let codec = (header.salt, header.version);
            later = Some(Later::find(src, c.pos + 1, codec, max, c.expected)?);
        }
        let Some(later) = later.as_ref() else {
            break;
        };
        scan.rescan_bytes = later.checked;
        if later.exhausted {
            // Format 1 has no header CRC: a torn tail whose payloads hold small integers can
            // exhaust the budget without any crafting. In the last segment, where a crash
            // tears, that stays a torn tail (cut, the bytes kept in quarantine) as the
            // format-1 code treated it; anywhere else, and in format 2 (only a crafted file
            // forges header CRCs), it is refused.
            let v1_tail = header.version == VERSION_1
                && policy.is_last
                && mode == RecoveryMode::TolerateTornTail;
            if !v1_tail {
                return Err(corrupt(path, c.pos, CorruptionKind::RescanLimit));
            }
            let at = if c.in_batch { c.batch_start } else { c.pos };
            c.in_batch = false;
            scan.cut = Some((at, damage));
            break;
        }
        if policy.on_damage(later, damage, &mut c, &mut scan)? == Flow::Stop {
            break;
        }
    }
    let at_end = c.pos >= len || zero_tail;
    policy.on_end(len, at_end, next_first_lsn, &mut c, &mut scan)?;
    c.close_extent(&mut scan);
    scan.last_lsn = c.complete_lsn;
    Ok(scan)
}

fn corrupt(path: &Path, offset: u64, kind: CorruptionKind) -> Error {
    Error::Corruption {
        path: path.to_path_buf(),
        offset,
        kind,
    }
}

/// Decodes a segment's header and checks it against the file name.
fn check_header(bytes: &[u8], path: &Path, name_lsn: Lsn) -> Result<SegmentHeader> {
    let header = match SegmentHeader::decode(bytes) {
        Ok(h) => h,
        Err(HeaderError::UnsupportedVersion(version)) => {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        Err(e) => return Err(corrupt(path, 0, e.into())),
    };
    if header.first_lsn != name_lsn {
        let kind = CorruptionKind::NameMismatch {
            name_lsn,
            header_lsn: header.first_lsn,
        };
        return Err(corrupt(path, HEADER_FIRST_LSN as u64, kind));
    }
    Ok(header)
}

/// Where a segment scan is, and what survives so far.
struct Cursor {
    pos: u64,
    /// Where the current run of kept records started.
    extent_start: u64,
    /// End of the last complete batch, and its LSN: what survives if the tail is cut.
    complete_end: u64,
    complete_lsn: Option<Lsn>,
    /// The LSN the next record must have.
    expected: Lsn,
    in_batch: bool,
    batch_start: u64,
    batch_records: u64,
}

impl Cursor {
    fn new(first_lsn: Lsn) -> Cursor {
        let start = SEGMENT_HEADER_LEN as u64;
        Cursor {
            pos: start,
            extent_start: start,
            complete_end: start,
            complete_lsn: None,
            expected: first_lsn,
            in_batch: false,
            batch_start: start,
            batch_records: 0,
        }
    }

    /// Takes the valid record `lsn` (`len` bytes) at the cursor.
    fn take(&mut self, lsn: Lsn, continues: bool, len: u64, scan: &mut Scan) {
        if !self.in_batch {
            self.batch_start = self.pos;
        }
        self.in_batch = continues;
        self.pos += len;
        self.expected += 1;
        self.batch_records += 1;
        if !self.in_batch {
            scan.records += self.batch_records;
            self.batch_records = 0;
            self.complete_end = self.pos;
            self.complete_lsn = Some(lsn);
        }
    }

    /// Ends the current run of kept records (at the end of the last complete batch).
    fn close_extent(&self, scan: &mut Scan) {
        if self.complete_end > self.extent_start {
            scan.extents.push(Extent {
                start: self.extent_start,
                end: self.complete_end,
            });
        }
    }
}

/// Whether the scan goes on after damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// What the [`RecoveryMode`] makes of damage in one segment.
struct Policy<'a> {
    path: &'a Path,
    mode: RecoveryMode,
    /// The last segment: the only one a crash can have torn.
    is_last: bool,
}

impl Policy<'_> {
    /// Damage `kind` at the cursor: an error, a torn tail to cut, or a range to skip.
    fn on_damage(
        &self,
        found: &Later,
        kind: CorruptionKind,
        c: &mut Cursor,
        scan: &mut Scan,
    ) -> Result<Flow> {
        let damage_at = if c.in_batch { c.batch_start } else { c.pos };
        let later = found.after(c.pos);
        match self.mode {
            RecoveryMode::Strict => Err(corrupt(self.path, c.pos, kind)),
            RecoveryMode::TolerateTornTail => {
                // Valid records after the damage are a torn tail too if none of them was
                // written after the damaged one was known durable: the disk persisted pages of
                // the unsynced window out of order, and nothing from the damage on was ever
                // acknowledged. One written after it was durable proves corruption.
                let durable_before_later = later.is_some_and(|(i, _, _)| {
                    found.max_synced.get(i).copied().unwrap_or(0) >= c.expected
                });
                if !self.is_last || durable_before_later {
                    return Err(corrupt(self.path, c.pos, kind));
                }
                scan.cut = Some((damage_at, kind));
                Ok(Flow::Stop)
            }
            RecoveryMode::SkipCorrupt => {
                // An incomplete batch before the damage is dropped with it.
                c.in_batch = false;
                c.batch_records = 0;
                c.close_extent(scan);
                match later {
                    Some((_, p, lsn)) => {
                        scan.skipped.push((damage_at, p - damage_at, kind));
                        c.expected = lsn;
                        c.pos = p;
                        c.extent_start = p;
                        c.complete_end = p;
                        Ok(Flow::Continue)
                    }
                    None => {
                        if self.is_last {
                            scan.cut = Some((damage_at, kind));
                        } else {
                            scan.skipped.push((damage_at, found.len - damage_at, kind));
                        }
                        c.extent_start = c.complete_end;
                        Ok(Flow::Stop)
                    }
                }
            }
        }
    }

    /// The segment's records ended (`at_end`: at the end of the file or of its records) or
    /// the scan stopped: what happens to a batch still open.
    fn on_end(
        &self,
        len: u64,
        at_end: bool,
        next_first_lsn: Option<Lsn>,
        c: &mut Cursor,
        scan: &mut Scan,
    ) -> Result<()> {
        if !c.in_batch || scan.cut.is_some() {
            return Ok(());
        }
        if next_first_lsn.is_some_and(|n| n > c.expected) {
            // A segment that ends inside a batch and is followed by an LSN gap was cut there
            // by `truncate_after` (which first starts a segment at the high-water mark, then
            // cuts): the caller asked for exactly these records to stay.
            scan.records += c.batch_records;
            c.complete_end = c.pos;
            c.complete_lsn = Some(c.expected - 1);
        } else if at_end {
            // The log ends inside a batch: all or nothing, so the batch goes.
            let kind = CorruptionKind::IncompleteBatch;
            let at = c.batch_start;
            match self.mode {
                RecoveryMode::Strict => return Err(corrupt(self.path, at, kind)),
                RecoveryMode::TolerateTornTail if !self.is_last => {
                    return Err(corrupt(self.path, at, kind));
                }
                RecoveryMode::SkipCorrupt if !self.is_last => {
                    scan.skipped.push((at, len - c.batch_start, kind));
                }
                _ => scan.cut = Some((at, kind)),
            }
        }
        Ok(())
    }
}

/// The log's segments after recovery, oldest first, and the report.
pub(crate) struct Recovered {
    pub segments: Vec<SegmentMeta>,
    pub report: RecoveryReport,
    /// The LSN the next append gets.
    pub next_lsn: Lsn,
    /// The last segment cannot take appends (none exists, its creation was torn and it was
    /// removed, or it is in format 1): the writer must start a new one at `next_lsn`.
    pub needs_new_segment: bool,
    /// The last segment's records end with a seal.
    pub last_sealed: bool,
    /// The chain file lists exactly these segments (else a read-write open writes it).
    pub chained: bool,
}

/// The LSN of the first record a scan kept, if it kept one.
fn first_lsn(scan: &Scan, src: &mut dyn Source, max: u32) -> Result<Option<Lsn>> {
    let Some(e) = scan.extents.first() else {
        return Ok(None);
    };
    let h = src.get(e.start, RECORD_HEADER_LEN)?;
    let (salt, version) = (scan.header.salt, scan.header.version);
    Ok(decode_header(h, salt, version, max).ok().map(|r| r.lsn))
}

/// The chain that lists `segments`: each one's first LSN and salt, and the last LSN of every
/// one but the last.
pub(crate) fn chain_of(segments: &[SegmentMeta]) -> Vec<Link> {
    let n = segments.len();
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| Link {
            first_lsn: s.first_lsn,
            salt: s.salt,
            last_lsn: (i + 1 < n).then(|| s.last_lsn.unwrap_or(s.first_lsn.saturating_sub(1))),
        })
        .collect()
}

/// A segment's LSNs start after the previous segment's last one.
fn check_order(prev: &SegmentMeta, scan: &Scan, path: &Path) -> Result<()> {
    let previous_last = prev.last_lsn.unwrap_or(prev.first_lsn.saturating_sub(1));
    if scan.header.first_lsn <= previous_last {
        let kind = CorruptionKind::SegmentOverlap {
            previous_last,
            first: scan.header.first_lsn,
        };
        return Err(corrupt(path, HEADER_FIRST_LSN as u64, kind));
    }
    Ok(())
}

/// A torn tail to cut from the last segment.
struct Cut {
    offset: u64,
    kind: CorruptionKind,
    /// Cut on disk (else only reported: a read-only open).
    repair: bool,
    mode: RecoveryMode,
}

/// Cuts a torn tail (durably, when repairing) and reports it.
fn cut_tail(
    fs: &DurableFs,
    (file, src, path): (&File, &mut dyn Source, &Path),
    cut: Cut,
    report: &mut RecoveryReport,
) -> Result<()> {
    let len = src.len();
    // Trailing zeros are preallocated space, not data.
    let data_end = end_of_nonzero(src, cut.offset)?;
    let dropped = data_end - cut.offset;
    log::warn!(
        "{}: torn tail at offset {}: {} bytes ({}){}",
        path.display(),
        cut.offset,
        dropped,
        cut.kind,
        if cut.repair { ", cut" } else { "" }
    );
    if cut.repair {
        // Nothing destroyed: the bytes go to quarantine/ first, durably.
        let kept = fs.quarantine_tail(parent_dir(path), path, src, cut.offset)?;
        if let Some(kept) = kept {
            log::warn!(
                "{}: the cut bytes are kept in {}",
                path.display(),
                kept.display()
            );
            report.quarantined.push(kept);
        }
        file.set_len(cut.offset)?;
        if data_end < len {
            // Keep the preallocated size: zeros, not garbage, after the cut.
            file.set_len(len)?;
        }
        file.sync_data()?;
    }
    let damage = Damage {
        path: path.to_path_buf(),
        offset: cut.offset,
        len: dropped,
        kind: cut.kind,
    };
    if cut.mode == RecoveryMode::SkipCorrupt {
        report.skipped.push(damage.clone());
    }
    report.truncated_tail = Some(damage);
    Ok(())
}

/// Which segment files recovery reads, given the chain: every listed segment (its link
/// kept to check it against), and the unlisted ones that may only be leftovers of an
/// unfinished truncation (removed when repairing) or of a rotation cut before its chain was
/// written (empty: removed when repairing). A listed segment that is not there is
/// corruption.
fn plan(
    fs: &DurableFs,
    dir: &Path,
    names: Vec<(Lsn, PathBuf)>,
    links: Option<&[Link]>,
    repair: bool,
    report: &mut RecoveryReport,
) -> Result<Vec<(Lsn, PathBuf, Option<Link>)>> {
    let Some(links) = links else {
        // No chain: a log written before format 2, or one whose creation a crash cut before
        // its chain was written (its segment then holds nothing). A format-2 segment with
        // records but no chain means the chain was lost: refused.
        for (_, path) in &names {
            let file = fs.open(path, Access::Read)?;
            let mut head = [0u8; SEGMENT_HEADER_LEN];
            let len = file.len()?;
            if len > SEGMENT_HEADER_LEN as u64 {
                file.read_exact_at(&mut head, 0)?;
                if SegmentHeader::decode(&head).is_ok_and(|h| h.version != VERSION_1) {
                    return Err(corrupt(
                        &dir.join(CHAIN_FILE),
                        0,
                        CorruptionKind::MissingChain,
                    ));
                }
            }
        }
        return Ok(names.into_iter().map(|(l, p)| (l, p, None)).collect());
    };
    let mut out = Vec::new();
    let mut present = names.into_iter().peekable();
    let last_first = links.last().map(|l| l.first_lsn);
    for link in links {
        while let Some((lsn, path)) = present.next_if(|(l, _)| *l < link.first_lsn) {
            drop_unlisted(fs, (lsn, &path), last_first, repair, report)?;
        }
        match present.next_if(|(l, _)| *l == link.first_lsn) {
            Some((lsn, path)) => out.push((lsn, path, Some(*link))),
            None => {
                let path = dir.join(segment_name(link.first_lsn));
                return Err(corrupt(&path, 0, CorruptionKind::MissingSegment));
            }
        }
    }
    for (lsn, path) in present {
        drop_unlisted(fs, (lsn, &path), last_first, repair, report)?;
    }
    Ok(out)
}

/// A segment file the chain does not list. Older than the chain's last segment: a segment
/// a `truncate_before` or `truncate_after` had already taken out of the chain when a crash
/// came (the caller asked for it to go). Newer: a segment a rotation created just before a
/// crash, before the chain named it; nothing was appended to it yet, so it holds no more
/// than its header. Either is removed when repairing, left alone otherwise, and reported.
fn drop_unlisted(
    fs: &DurableFs,
    (lsn, path): (Lsn, &Path),
    last_first: Option<Lsn>,
    repair: bool,
    report: &mut RecoveryReport,
) -> Result<()> {
    let newer = last_first.is_none_or(|f| lsn > f);
    if newer && fs.open(path, Access::Read)?.len()? > SEGMENT_HEADER_LEN as u64 {
        return Err(corrupt(path, 0, CorruptionKind::UnlistedSegment));
    }
    log::info!(
        "{}: not in the segment chain ({}){}",
        path.display(),
        if newer {
            "an unfinished rotation"
        } else {
            "an unfinished truncation"
        },
        if repair { ", removed" } else { "" }
    );
    if repair {
        fs.remove_file(path)?;
    }
    report.removed_unlisted.push(path.to_path_buf());
    Ok(())
}

/// Checks a sealed segment's scan against its chain link: records missing at its end are
/// corruption (under `SkipCorrupt`, reported and salvaged around); records past the link's last LSN are what a `truncate_after` cut out before
/// a crash came: they are cut (when repairing) or left out.
fn check_link(
    (file, src, path): (&File, &mut dyn Source, &Path),
    link: &Link,
    scan: &mut Scan,
    (repair, mode): (bool, RecoveryMode),
) -> Result<()> {
    let Some(last) = link.last_lsn else {
        return Ok(());
    };
    let found = scan.last_lsn.unwrap_or(link.first_lsn.saturating_sub(1));
    if found < last {
        let end = scan
            .extents
            .last()
            .map_or(SEGMENT_HEADER_LEN as u64, |e| e.end);
        let kind = CorruptionKind::MissingRecords {
            expected_last: last,
            found_last: found,
        };
        if mode != RecoveryMode::SkipCorrupt {
            return Err(corrupt(path, end, kind));
        }
        // Salvage: the records that are there are kept, the loss reported.
        scan.skipped
            .push((end, src.len().saturating_sub(end), kind));
        return Ok(());
    }
    if found == last {
        return Ok(());
    }
    let cut = offset_after(src, scan, last)?;
    log::info!(
        "{}: records after LSN {last} were dropped by truncate_after{}",
        path.display(),
        if repair { ", cut" } else { "" }
    );
    if repair {
        file.set_len(cut)?;
        file.sync_data()?;
    }
    scan.extents.retain(|e| e.start < cut);
    if let Some(e) = scan.extents.last_mut() {
        e.end = e.end.min(cut);
    }
    scan.records = scan.records.saturating_sub(found - last);
    scan.last_lsn = (last >= link.first_lsn).then_some(last);
    Ok(())
}

/// The offset of the first record after LSN `last` in a segment's bytes (or the end of its
/// records).
fn offset_after(src: &mut dyn Source, scan: &Scan, last: Lsn) -> Result<u64> {
    let header = &scan.header;
    // Only inside the extents, whose record boundaries the scan checked: their headers are
    // enough to walk them.
    for e in &scan.extents {
        let mut pos = e.start;
        while pos < e.end {
            let h = src.get(pos, RECORD_HEADER_LEN)?;
            let Ok(r) = decode_header(h, header.salt, header.version, MAX_RECORD_LIMIT) else {
                return Ok(pos);
            };
            if r.lsn > last && !r.is_seal() {
                return Ok(pos);
            }
            pos += r.encoded_len();
        }
    }
    Ok(scan
        .extents
        .last()
        .map_or(SEGMENT_HEADER_LEN as u64, |e| e.end))
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
    let temp = dir.join(format!("{CHAIN_FILE}{}", durable_fs::TEMP_SUFFIX));
    if repair && fs.exists(&temp)? {
        fs.remove_file(&temp)?; // an interrupted replace of the chain
    }
    let mut report = RecoveryReport::default();
    let links = chain::load(fs, dir)?;
    let planned = plan(fs, dir, names, links.as_deref(), repair, &mut report)?;
    let mut segments: Vec<SegmentMeta> = Vec::new();
    let count = planned.len();
    let firsts: Vec<Lsn> = planned.iter().map(|(l, _, _)| *l).collect();
    let mut next_lsn: Lsn = 1;
    let mut last_sealed = false;
    for (i, (name_lsn, path, link)) in planned.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let next_first_lsn = firsts.get(i + 1).copied();
        let may_cut = is_last || link.is_some_and(|l| l.last_lsn.is_some());
        let access = if may_cut && repair {
            Access::ReadWrite
        } else {
            Access::Read
        };
        let file = fs.open(&path, access)?;
        let len = file.len()?;
        if len > MAX_SEGMENT_LEN {
            let kind = CorruptionKind::SegmentTooLong {
                len,
                max: MAX_SEGMENT_LEN,
            };
            return Err(corrupt(&path, MAX_SEGMENT_LEN, kind));
        }
        let torn_creation = is_last && link.is_none() && len <= SEGMENT_HEADER_LEN as u64 && {
            let mut head = vec![0u8; usize::try_from(len).unwrap_or(0)];
            file.read_exact_at(&mut head, 0)?;
            SegmentHeader::decode(&head).is_err()
        };
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
        // Read a chunk at a time: memory is bounded whatever the segment's length.
        let mut src = Chunks::new(&file, len);
        let mut scan = scan_segment(
            &mut src,
            &path,
            name_lsn,
            max_record_bytes,
            mode,
            next_first_lsn,
        )?;
        // Before anything is cut (the reader's view of the file ends at its old length).
        let first = first_lsn(&scan, &mut src, max_record_bytes)?;
        if let Some(link) = &link {
            if link.salt != scan.header.salt {
                let kind = CorruptionKind::ForeignSegment {
                    chain_salt: link.salt,
                    header_salt: scan.header.salt,
                };
                return Err(corrupt(&path, HEADER_SALT as u64, kind));
            }
            check_link((&file, &mut src, &path), link, &mut scan, (repair, mode))?;
        }
        if let Some(prev) = segments.last() {
            check_order(prev, &scan, &path)?;
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
            let cut = Cut {
                offset,
                kind,
                repair,
                mode,
            };
            cut_tail(fs, (&file, &mut src, &path), cut, &mut report)?;
        }
        report.records += scan.records;
        report.rescan_bytes += scan.rescan_bytes;
        last_sealed = scan.sealed && scan.cut.is_none();
        if report.first_lsn.is_none() {
            report.first_lsn = first;
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
            version: scan.header.version,
            file: Arc::new(file),
            extents: scan.extents,
            last_lsn: scan.last_lsn,
        });
    }
    report.segments = segments.len();
    let needs_new_segment = segments.is_empty()
        || !report.removed_torn_segments.is_empty()
        || segments.last().is_some_and(|s| s.version != VERSION);
    let chained = links.is_some_and(|l| l == chain_of(&segments));
    Ok(Recovered {
        segments,
        report,
        next_lsn,
        needs_new_segment,
        last_sealed,
        chained,
    })
}
