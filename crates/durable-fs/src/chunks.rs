//! Bounded-memory reading for scans: [`Source`], a file or a byte slice read by position,
//! and [`Chunks`], a file read through one reusable buffer of [`CHUNK`] bytes, so recovery
//! and verification hold a chunk (or the one record they are checking) in memory, never a
//! whole file.
//!
//! ```
//! use durable_fs::{Bytes, Source};
//!
//! let mut src = Bytes(b"hello, world");
//! assert_eq!(src.get(7, 5).unwrap(), b"world");
//! assert_eq!(src.get(10, 100).unwrap(), b"ld", "clipped at the end");
//! ```

use crate::error::Result;
use crate::file::File;

/// The read size of [`Chunks`]: 1 MiB.
pub const CHUNK: usize = 1 << 20;

/// Bytes read by position: a file through [`Chunks`], or a slice through [`Bytes`].
pub trait Source {
    /// The length in bytes.
    fn len(&self) -> u64;

    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes `at..at + n`, clipped at the end (empty past it). A [`Chunks`] holds at most
    /// `max(n, CHUNK)` bytes for it: callers ask for a header, a chunk, or one record's key.
    fn get(&mut self, at: u64, n: usize) -> Result<&[u8]>;

    /// Some bytes from `at` on (at least one, unless `at` is past the end; at most
    /// [`CHUNK`]): what is already buffered if `at` is in the buffer, else a chunk read
    /// from `at`. For searches that walk forward, so they never re-read what they hold.
    fn get_from(&mut self, at: u64) -> Result<&[u8]> {
        self.get(at, CHUNK)
    }
}

/// A byte slice as a [`Source`] (tests, small files already read).
#[derive(Clone, Copy, Debug)]
pub struct Bytes<'a>(pub &'a [u8]);

impl Source for Bytes<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn get(&mut self, at: u64, n: usize) -> Result<&[u8]> {
        let start = usize::try_from(at).unwrap_or(usize::MAX).min(self.0.len());
        let end = start.saturating_add(n).min(self.0.len());
        Ok(self.0.get(start..end).unwrap_or_default())
    }
}

/// A file read in chunks through one reusable buffer.
#[derive(Debug)]
pub struct Chunks<'a> {
    file: &'a File,
    len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
    /// Bytes read from the file so far.
    read: u64,
}

impl<'a> Chunks<'a> {
    /// Reads `file`, taken to be `len` bytes long (its length when the scan began).
    pub fn new(file: &'a File, len: u64) -> Chunks<'a> {
        Chunks {
            file,
            len,
            buf: Vec::new(),
            start: 0,
            read: 0,
        }
    }

    /// Bytes read from the file so far: what a scan's reads cost, for tests and reports
    /// (a linear scan reads each byte about once).
    pub fn bytes_read(&self) -> u64 {
        self.read
    }
}

impl Source for Chunks<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn get(&mut self, at: u64, n: usize) -> Result<&[u8]> {
        let end = at.saturating_add(n as u64).min(self.len);
        if at >= end {
            return Ok(&[]);
        }
        let held = self.start + self.buf.len() as u64;
        if at < self.start || end > held {
            let want = (end - at).max(CHUNK as u64).min(self.len - at);
            let want = usize::try_from(want).unwrap_or(usize::MAX);
            if want <= CHUNK && self.buf.capacity() > 2 * CHUNK {
                // One large record read earlier: give its memory back.
                self.buf = Vec::new();
            }
            self.buf.resize(want, 0);
            self.start = at;
            // Read to the end of what is there: a file that shrank under a reader (a writer
            // cut a torn tail) ends here; that is not an error.
            let mut got = 0;
            while got < want {
                let rest = self.buf.get_mut(got..).unwrap_or_default();
                let n = self.file.read_at(rest, at + got as u64)?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            self.read += got as u64;
            if got < want {
                self.buf.truncate(got);
                self.len = at + got as u64;
            }
        }
        let end = end.min(self.start + self.buf.len() as u64);
        if at >= end {
            return Ok(&[]);
        }
        let from = usize::try_from(at - self.start).unwrap_or(usize::MAX);
        let to = usize::try_from(end - self.start).unwrap_or(usize::MAX);
        Ok(self.buf.get(from..to).unwrap_or_default())
    }

    fn get_from(&mut self, at: u64) -> Result<&[u8]> {
        let held = self.start + self.buf.len() as u64;
        if at >= self.start && at < held {
            let from = usize::try_from(at - self.start).unwrap_or(usize::MAX);
            let to = from + usize::try_from((held - at).min(CHUNK as u64)).unwrap_or(CHUNK);
            return Ok(self.buf.get(from..to).unwrap_or_default());
        }
        self.get(at, CHUNK)
    }
}

/// Feeds `src` bytes `at..at + n` to `f`, a chunk at a time.
pub fn each_chunk(src: &mut dyn Source, at: u64, n: u64, mut f: impl FnMut(&[u8])) -> Result<()> {
    let end = at.saturating_add(n).min(src.len());
    let mut pos = at;
    while pos < end {
        let take = usize::try_from((end - pos).min(CHUNK as u64)).unwrap_or(CHUNK);
        let chunk = src.get(pos, take)?;
        if chunk.is_empty() {
            break;
        }
        f(chunk);
        pos += chunk.len() as u64;
    }
    Ok(())
}

/// The offset just past the last nonzero byte of `src` in `from..`, or `from` if there is
/// none (read backwards, a chunk at a time).
pub fn end_of_nonzero(src: &mut dyn Source, from: u64) -> Result<u64> {
    let mut end = src.len();
    while end > from {
        let start = end.saturating_sub(CHUNK as u64).max(from);
        let chunk = src.get(start, usize::try_from(end - start).unwrap_or(CHUNK))?;
        if let Some(p) = chunk.iter().rposition(|&b| b != 0) {
            return Ok(start + p as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_clip_and_helpers_walk_chunks() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let mut src = Bytes(&data);
        assert_eq!(src.get(5, 3).unwrap(), &data[5..8]);
        assert!(src.get(data.len() as u64 + 4, 3).unwrap().is_empty());
        let mut seen = 0u64;
        let mut sum = 0u64;
        each_chunk(&mut src, 10, data.len() as u64, |c| {
            seen += c.len() as u64;
            sum += c.iter().map(|&b| u64::from(b)).sum::<u64>();
        })
        .unwrap();
        assert_eq!(seen, data.len() as u64 - 10);
        assert_eq!(sum, data[10..].iter().map(|&b| u64::from(b)).sum::<u64>());
        let mut zeros = data.clone();
        zeros.push(7);
        let end = zeros.len() as u64;
        zeros.extend(std::iter::repeat_n(0u8, 2 * CHUNK));
        assert_eq!(end_of_nonzero(&mut Bytes(&zeros), 0).unwrap(), end);
        assert_eq!(end_of_nonzero(&mut Bytes(&[0u8; 10]), 3).unwrap(), 3);
    }
}
