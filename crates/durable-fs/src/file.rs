//! [`File`]: an open file with fail-stop error handling.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Op, Result};
use crate::fs::RawFile;

/// An open file, obtained from [`DurableFs`](crate::DurableFs).
///
/// All methods take `&self`: one thread may append while another syncs.
///
/// **Fail-stop.** The first failed write, truncate or sync *poisons* the handle: every later
/// write, truncate or sync returns [`Error::Poisoned`] carrying the original error, and nothing
/// is retried. After a failed `fsync` the kernel may already have dropped the dirty pages and
/// marked them clean, so a retry can report success for data that never reached the disk.
/// Reads still work. To continue, drop the handle, reopen, and recover from what is on disk.
#[derive(Debug)]
pub struct File {
    raw: Box<dyn RawFile>,
    path: PathBuf,
    /// End of file as this handle knows it: where [`File::append`] writes next.
    end: AtomicU64,
    poison: OnceLock<(Op, Arc<io::Error>)>,
    /// Serialises syncs of this handle: when two fsyncs of one file run at once, Linux may
    /// report a write-back error to only one of them, and the other would "succeed".
    sync_lock: parking_lot::Mutex<()>,
}

impl File {
    pub(crate) fn new(raw: Box<dyn RawFile>, path: PathBuf, len: u64) -> Self {
        File {
            raw,
            path,
            end: AtomicU64::new(len),
            poison: OnceLock::new(),
            sync_lock: parking_lot::Mutex::new(()),
        }
    }

    /// The path this file was opened under.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True once a write or sync has failed; see the type's documentation.
    pub fn is_poisoned(&self) -> bool {
        self.poison.get().is_some()
    }

    fn check_poison(&self) -> Result<()> {
        match self.poison.get() {
            None => Ok(()),
            Some((op, source)) => Err(Error::Poisoned {
                op: *op,
                path: self.path.clone(),
                source: Arc::clone(source),
            }),
        }
    }

    /// Records `err` as the poison (the first one wins) and returns the error to report now.
    fn poison_with(&self, op: Op, err: io::Error) -> Error {
        let err = Arc::new(err);
        let (first_op, first) = self.poison.get_or_init(|| (op, Arc::clone(&err)));
        if Arc::ptr_eq(first, &err) {
            // This call is the one that failed first: report it as a plain I/O error, with
            // its own kind, so callers can tell ENOSPC from EIO.
            Error::Io {
                op,
                path: self.path.clone(),
                source: io::Error::new(err.kind(), Arc::clone(&err)),
            }
        } else {
            Error::Poisoned {
                op: *first_op,
                path: self.path.clone(),
                source: Arc::clone(first),
            }
        }
    }

    /// Reads at `offset` into `buf`; returns how many bytes were read (0 at end of file).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.raw
            .read_at(buf, offset)
            .map_err(|e| Error::io(Op::Read, &self.path, e))
    }

    /// Fills `buf` from `offset`; an `UnexpectedEof` error if the file is shorter.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let Some(rest) = buf.get_mut(done..) else {
                break;
            };
            let n = self.read_at(rest, offset + done as u64)?;
            if n == 0 {
                return Err(Error::io(
                    Op::Read,
                    &self.path,
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "wanted {} bytes at offset {offset}, file ends at {}",
                            buf.len(),
                            offset + done as u64
                        ),
                    ),
                ));
            }
            done += n;
        }
        Ok(())
    }

    /// Reads the whole file.
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let len = self.len()?;
        let len = usize::try_from(len).map_err(|_| {
            Error::io(
                Op::Read,
                &self.path,
                io::Error::new(io::ErrorKind::OutOfMemory, "file too large to read whole"),
            )
        })?;
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    /// Writes all of `buf` at `offset`. Not durable until [`File::sync_data`].
    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_poison()?;
        self.raw
            .write_all_at(buf, offset)
            .map_err(|e| self.poison_with(Op::Write, e))?;
        self.end
            .fetch_max(offset + buf.len() as u64, Ordering::AcqRel);
        Ok(())
    }

    /// Appends `buf` at this handle's end of file and returns the offset it was written at.
    /// Concurrent appends on one handle get disjoint ranges. Not durable until synced.
    pub fn append(&self, buf: &[u8]) -> Result<u64> {
        self.check_poison()?;
        let offset = self.end.fetch_add(buf.len() as u64, Ordering::AcqRel);
        self.raw
            .write_all_at(buf, offset)
            .map_err(|e| self.poison_with(Op::Write, e))?;
        Ok(offset)
    }

    /// Makes the file's data and length durable (`fdatasync`). Fail-stop: see the type docs.
    pub fn sync_data(&self) -> Result<()> {
        let _one_at_a_time = self.sync_lock.lock();
        self.check_poison()?;
        self.raw
            .sync_data()
            .map_err(|e| self.poison_with(Op::SyncData, e))?;
        // A write that failed while we synced means the file is not what was asked for.
        self.check_poison()
    }

    /// Makes the file's data and all metadata durable (`fsync`). Fail-stop: see the type docs.
    pub fn sync_all(&self) -> Result<()> {
        let _one_at_a_time = self.sync_lock.lock();
        self.check_poison()?;
        self.raw
            .sync_all()
            .map_err(|e| self.poison_with(Op::SyncAll, e))?;
        self.check_poison()
    }

    /// The file's length as the filesystem reports it.
    pub fn len(&self) -> Result<u64> {
        self.raw
            .len()
            .map_err(|e| Error::io(Op::Len, &self.path, e))
    }

    /// True when the file is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Where [`File::append`] writes next.
    pub fn append_offset(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// Extends the file to `len` bytes (nothing if it is that long already) by writing
    /// zeros, not by leaving a sparse hole as [`File::set_len`] does: the blocks are allocated
    /// by the write, so later overwrites of them followed by `fdatasync` flush data only,
    /// with no block allocation or extent change to journal on the sync path. Not durable by
    /// itself (sync it, or let the next sync of the file carry it).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let fs = durable_fs::DurableFs::real();
    /// let f = fs.create_new(&tmp.path().join("seg"))?;
    /// f.allocate(100_000)?;
    /// assert_eq!(f.len()?, 100_000);
    /// f.allocate(10)?; // never shrinks
    /// assert_eq!(f.len()?, 100_000);
    /// # Ok::<(), durable_fs::Error>(())
    /// ```
    pub fn allocate(&self, len: u64) -> Result<()> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let mut at = self.len()?;
        while at < len {
            let n = (len - at).min(ZEROS.len() as u64);
            let chunk = ZEROS.get(..n as usize).unwrap_or_default();
            self.write_all_at(chunk, at)?;
            at += n;
        }
        Ok(())
    }

    /// Truncates (or zero-extends) the file to `len`, and moves the append offset there.
    /// Not durable until synced.
    pub fn set_len(&self, len: u64) -> Result<()> {
        self.check_poison()?;
        self.raw
            .set_len(len)
            .map_err(|e| self.poison_with(Op::SetLen, e))?;
        self.end.store(len, Ordering::Release);
        Ok(())
    }
}
