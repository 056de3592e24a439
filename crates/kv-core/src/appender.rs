//! [`Appender`]: the active file's write path, shared by both engines: encode a batch,
//! grow the file in preallocated steps, one `pwrite`, and seal the file when it becomes
//! immutable.

use std::sync::Arc;

use durable_fs::File;

use crate::batch::WriteBatch;
use crate::data_file::DataFile;
use crate::format::{
    BATCH_CONTINUES, FILE_HEADER_LEN, RECORD_HEADER_LEN, TOMBSTONE, encode_record, encode_seal,
};

/// Where one operation of a batch went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Its seq.
    pub seq: u64,
    /// Offset of its record in the file.
    pub offset: u64,
    /// The value's length (0 for a delete).
    pub value_len: u32,
    /// A delete.
    pub tombstone: bool,
}

/// The writer's state of the active file. Engines keep it under their writer lock.
#[derive(Debug)]
pub struct Appender {
    /// The active file.
    pub data: DataFile,
    /// Where the next record goes (the end of the records).
    pub offset: u64,
    /// Allocated size of the file (records, then preallocated zeros).
    pub file_len: u64,
    /// Last sequence number used.
    pub seq: u64,
    /// True when the file ends with a seal (nothing appended since).
    sealed: bool,
    /// Reused encode buffer.
    buf: Vec<u8>,
}

impl Appender {
    /// The appender of `data`, whose records end at `offset`, `file_len` bytes allocated,
    /// `seq` the last sequence number used.
    pub fn new(data: DataFile, offset: u64, file_len: u64, seq: u64) -> Appender {
        Appender {
            data,
            offset,
            file_len,
            seq,
            sealed: false,
            buf: Vec::new(),
        }
    }

    /// Tells the appender the file already ends with a seal (recovery found one last), so
    /// closing again without a write adds no second seal.
    pub fn mark_sealed(&mut self) {
        self.sealed = true;
    }

    /// The active file's handle.
    pub fn file(&self) -> &Arc<File> {
        &self.data.file
    }

    /// True once the file holds a record.
    pub fn has_records(&self) -> bool {
        self.offset > FILE_HEADER_LEN as u64
    }

    /// True when `batch_bytes` more, and the seal that will close the file, would take a
    /// file that already holds records past `max_file_bytes` (a batch never straddles files;
    /// an oversized batch gets a file of its own).
    pub fn is_full(&self, batch_bytes: u64, max_file_bytes: u64) -> bool {
        let sealed = self.offset + batch_bytes + RECORD_HEADER_LEN as u64;
        self.has_records() && sealed > max_file_bytes
    }

    /// Appends `batch` as consecutive records (all but the last flagged `BATCH_CONTINUES`)
    /// in one positional write, numbering them from `seq + 1`; `synced` is the highest seq
    /// known durable. Grows the file in steps of `preallocate` bytes (capped at
    /// `max_file_bytes`) so most `fdatasync`s have no size to flush.
    ///
    /// Nothing is durable on return. On an error the appender is unchanged (the caller
    /// poisons its store: the bytes may be half written).
    pub fn append(
        &mut self,
        batch: &WriteBatch,
        synced: u64,
        preallocate: u64,
        max_file_bytes: u64,
    ) -> Result<Vec<Appended>, durable_fs::Error> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let n = batch.len();
        let mut out = Vec::with_capacity(n);
        for (i, (key, value)) in batch.iter().enumerate() {
            let seq = self.seq + 1 + i as u64;
            let offset = self.offset + buf.len() as u64;
            let mut flags = if i + 1 < n { BATCH_CONTINUES } else { 0 };
            if value.is_none() {
                flags |= TOMBSTONE;
            }
            let v = value.unwrap_or_default();
            encode_record(&mut buf, self.data.salt, seq, synced, flags, key, v);
            out.push(Appended {
                seq,
                offset,
                value_len: v.len() as u32,
                tombstone: value.is_none(),
            });
        }
        debug_assert!(
            decodes_back(&buf, self.data.salt, n),
            "an encoded batch must decode back before it is written"
        );
        let r = self.write(&buf, preallocate, max_file_bytes);
        self.buf = buf;
        r?;
        self.sealed = false;
        self.seq += n as u64;
        Ok(out)
    }

    fn write(
        &mut self,
        buf: &[u8],
        preallocate: u64,
        max_file_bytes: u64,
    ) -> Result<(), durable_fs::Error> {
        let end = self.offset + buf.len() as u64;
        if preallocate > 0 && end > self.file_len {
            let step = (self.file_len + preallocate).min(max_file_bytes);
            let len = end.max(step);
            // Zeros written, not a sparse hole: later fdatasyncs overwrite allocated blocks.
            // The record first, the zeros after it. A failed zero write (ENOSPC, most likely
            // here) fails the put and poisons the store, fail-stop, though the record before it
            // is whole and may be found by the next open: a failed call is "maybe written",
            // never acknowledged.
            self.data.file.write_all_at(buf, self.offset)?;
            self.data.file.allocate(len)?;
            self.file_len = len;
            self.offset = end;
            return Ok(());
        }
        self.data.file.write_all_at(buf, self.offset)?;
        self.offset = end;
        Ok(())
    }

    /// Makes the file complete: syncs its records; then, if it holds records not yet sealed,
    /// appends a seal (a record saying every record before it is durable: written only
    /// after that fsync returned, so it never claims what a power cut could still take);
    /// trims the preallocated zeros; and syncs again. After this, damage anywhere in the
    /// file's records is corruption at the next open, never a torn tail. Called when the
    /// store closes and before the writer moves to a new file.
    pub fn seal(&mut self) -> Result<(), durable_fs::Error> {
        if self.has_records() && !self.sealed {
            self.data.file.sync_data()?;
            let mut seal = Vec::with_capacity(RECORD_HEADER_LEN);
            encode_seal(&mut seal, self.data.salt, self.seq);
            self.data.file.write_all_at(&seal, self.offset)?;
            self.offset += seal.len() as u64;
            self.file_len = self.file_len.max(self.offset);
            self.sealed = true;
        }
        if self.file_len > self.offset {
            self.data.file.set_len(self.offset)?;
            self.file_len = self.offset;
        }
        self.data.file.sync_data()
    }

    /// Continues in a new, empty file (after [`Appender::seal`] of the old one).
    pub fn start_file(&mut self, data: DataFile) {
        self.data = data;
        self.sealed = false;
        self.offset = FILE_HEADER_LEN as u64;
        self.file_len = FILE_HEADER_LEN as u64;
    }
}

/// The paired check of the write path: `n` records decode back from `buf`.
fn decodes_back(buf: &[u8], salt: u32, n: usize) -> bool {
    let mut pos = 0;
    for _ in 0..n {
        match crate::format::decode_record(
            buf.get(pos..).unwrap_or_default(),
            salt,
            crate::format::VERSION,
        ) {
            Ok(r) => pos += r.encoded_len(),
            Err(_) => return false,
        }
    }
    pos == buf.len()
}
