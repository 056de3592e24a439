//! [`Iter`]: reading records in LSN order across segments.

use std::collections::VecDeque;

use crate::error::{CorruptionKind, Error, Result};
use crate::format::{DecodeError, Lsn, decode_record};
use crate::recovery::{Extent, SegmentMeta};

/// Bytes read from a segment at a time.
const READ_CHUNK: usize = 1 << 20;

/// An iterator over `(lsn, payload)` from a snapshot of the log taken when it was created.
/// Records appended later are not seen. Every record's checksum is verified again as it is
/// read; damage yields one [`Error::Corruption`] naming file and offset, then the iterator ends.
#[derive(Debug)]
pub struct Iter {
    from: Lsn,
    max_record_bytes: u32,
    /// (segment, extents still to read) oldest first.
    segments: VecDeque<SegmentMeta>,
    current: Option<Cursor>,
    done: bool,
}

#[derive(Debug)]
struct Cursor {
    seg: SegmentMeta,
    extents: VecDeque<Extent>,
    /// Bytes of the current extent read but not yet decoded, starting at file offset `at`.
    buf: Vec<u8>,
    consumed: usize,
    at: u64,
    /// End of the current extent.
    end: u64,
    /// Next file offset to read.
    read_to: u64,
}

impl Iter {
    pub(crate) fn new(segments: Vec<SegmentMeta>, from: Lsn, max_record_bytes: u32) -> Iter {
        // Start at the last segment whose first LSN is <= from.
        let start = segments
            .iter()
            .rposition(|s| s.first_lsn <= from)
            .unwrap_or(0);
        Iter {
            from,
            max_record_bytes,
            segments: segments.into_iter().skip(start).collect(),
            current: None,
            done: false,
        }
    }

    fn next_record(&mut self) -> Result<Option<(Lsn, Vec<u8>)>> {
        loop {
            let cursor = match &mut self.current {
                Some(c) => c,
                None => {
                    let Some(seg) = self.segments.pop_front() else {
                        return Ok(None);
                    };
                    let extents: VecDeque<Extent> = seg.extents.iter().copied().collect();
                    self.current.insert(Cursor {
                        seg,
                        extents,
                        buf: Vec::new(),
                        consumed: 0,
                        at: 0,
                        end: 0,
                        read_to: 0,
                    })
                }
            };
            match cursor.next(self.max_record_bytes)? {
                Some((lsn, _, payload)) if lsn >= self.from => return Ok(Some((lsn, payload))),
                Some(_) => {}
                None => self.current = None,
            }
        }
    }
}

/// The offsets of `seg`'s records, for [`crate::Wal::read`]: one scan, every record's checksum
/// verified. The index ends at the first record whose LSN does not follow on from the
/// segment's first LSN one by one (a gap left by a salvage), and at damage or a read error:
/// what comes after is read by a scan, which reports the damage.
pub(crate) fn offsets(seg: &SegmentMeta, max: u32) -> crate::wal::SegIndexParts {
    let mut cursor = Cursor {
        seg: seg.clone(),
        extents: seg.extents.iter().copied().collect(),
        buf: Vec::new(),
        consumed: 0,
        at: 0,
        end: 0,
        read_to: 0,
    };
    let mut starts = Vec::new();
    let mut end = crate::format::SEGMENT_HEADER_LEN as u64;
    while let Ok(Some((lsn, at, _))) = cursor.next(max) {
        if lsn != seg.first_lsn + starts.len() as u64 {
            break;
        }
        starts.push(at);
        end = cursor.at;
    }
    (seg.first_lsn, starts, end)
}

impl Cursor {
    /// The next record of this segment, or `None` at its end.
    fn next(&mut self, max: u32) -> Result<Option<(Lsn, u64, Vec<u8>)>> {
        loop {
            let pending = self.buf.get(self.consumed..).unwrap_or_default();
            if self.at >= self.end {
                let Some(e) = self.extents.pop_front() else {
                    return Ok(None);
                };
                self.at = e.start;
                self.end = e.end;
                self.read_to = e.start;
                self.buf.clear();
                self.consumed = 0;
                continue;
            }
            match decode_record(pending, self.seg.salt, self.seg.version, max) {
                Ok(r) if r.is_seal() => {
                    self.consumed += r.encoded_len();
                    self.at += r.encoded_len() as u64;
                }
                Ok(r) => {
                    let out = (r.lsn, self.at, r.payload.to_vec());
                    let n = r.encoded_len();
                    self.consumed += n;
                    self.at += n as u64;
                    return Ok(Some(out));
                }
                Err(DecodeError::Truncated { need }) if self.read_to < self.end => {
                    // Keep the undecoded bytes, read at least what the record needs.
                    self.buf.drain(..self.consumed);
                    self.consumed = 0;
                    let want = (need as usize).max(READ_CHUNK);
                    let n = usize::try_from(self.end - self.read_to)
                        .unwrap_or(usize::MAX)
                        .min(want);
                    let old = self.buf.len();
                    self.buf.resize(old + n, 0);
                    let dst = self.buf.get_mut(old..).unwrap_or_default();
                    self.seg.file.read_exact_at(dst, self.read_to)?;
                    self.read_to += n as u64;
                }
                Err(e) => {
                    return Err(Error::Corruption {
                        path: self.seg.path.clone(),
                        offset: self.at,
                        kind: CorruptionKind::from(e),
                    });
                }
            }
        }
    }
}

impl Iterator for Iter {
    type Item = Result<(Lsn, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
