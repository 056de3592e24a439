//! The data-file lifecycle, in one place (as basho/bitcask keeps it in `bitcask_fileops`):
//! create a file durably with its header, open one and check its header against its name,
//! read a value back and check it is the record the index expects. Sealing the active file
//! is [`Appender::seal`](crate::Appender::seal).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable_fs::{Access, DurableFs, File};

use crate::error::{CorruptionKind, Error, Result};
use crate::format::{
    FILE_HEADER_LEN, FileHeader, FileKind, HEADER_FILE_ID, RECORD_HEADER_LEN, decode_record,
    record_len,
};

/// An open data file (a bitcask data file or an lsm-hash segment): its id, path, handle and
/// the salt its records' CRCs are mixed with.
#[derive(Clone, Debug)]
pub struct DataFile {
    /// The id in its name and header.
    pub id: u64,
    /// Where it is.
    pub path: PathBuf,
    /// The open handle (shared with readers).
    pub file: Arc<File>,
    /// Its records' CRC salt.
    pub salt: u32,
    /// Its format version (from its header): how its records are laid out.
    pub version: u32,
}

/// Where a value is, as an index records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueRef {
    /// The seq of the write that stored it.
    pub seq: u64,
    /// Offset of its record in the file.
    pub offset: u64,
    /// The value's length.
    pub value_len: u32,
}

/// The longest data file, segment, hint or index snapshot the format allows: offsets are
/// 32-bit (`max_file_bytes` is at most 4 GiB). A longer file is refused as corruption before
/// anything is allocated for it, whatever the reader's options.
pub const MAX_FILE_LEN: u64 = u32::MAX as u64;

/// The longest merge marker or manifest read (a text list of ids: 1 MiB is about 90,000).
pub const MAX_MARKER_LEN: u64 = 1 << 20;

/// Reads the small file at `path` whole, if it is at most `max` bytes (`None` if longer:
/// nothing is allocated for it).
pub fn read_at_most(fs: &DurableFs, path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    let file = fs.open(path, Access::Read)?;
    if file.len()? > max {
        return Ok(None);
    }
    Ok(Some(file.read_all()?))
}

/// `offset` as the 32-bit offset the indexes keep (files are at most 4 GiB), or a
/// [`CorruptionKind::OutOfRange`] naming `path`: checked, never truncated.
pub fn offset32(path: &Path, offset: u64) -> Result<u32> {
    u32::try_from(offset).map_err(|_| {
        let kind = CorruptionKind::OutOfRange {
            what: "offset",
            value: offset,
            max: u64::from(u32::MAX),
        };
        Error::corrupt(path, offset, kind)
    })
}

impl DataFile {
    /// Creates file `id` at `path` durably (its directory entry and its header are synced
    /// before this returns) with a fresh salt, `magic` and `kind`.
    pub fn create(
        fs: &DurableFs,
        path: PathBuf,
        magic: &[u8; 8],
        id: u64,
        kind: FileKind,
    ) -> Result<DataFile> {
        let file = fs.create_new(&path)?;
        let salt = durable_fs::random_salt(id);
        let header = FileHeader {
            kind,
            ..FileHeader::new(salt, id)
        };
        file.write_all_at(&header.encode(magic), 0)?;
        file.sync_data()?;
        Ok(DataFile {
            id,
            path,
            file: Arc::new(file),
            salt,
            version: header.version,
        })
    }

    /// Opens file `id` at `path` and checks its header (`magic`, version, CRC, and the id
    /// against the name). Returns the file and its header.
    pub fn open(
        fs: &DurableFs,
        path: PathBuf,
        magic: &[u8; 8],
        id: u64,
        access: Access,
    ) -> Result<(DataFile, FileHeader)> {
        let file = fs.open(&path, access)?;
        let mut h = [0u8; FILE_HEADER_LEN];
        if file.len()? < FILE_HEADER_LEN as u64 {
            return Err(Error::corrupt(path, 0, CorruptionKind::ShortHeader));
        }
        file.read_exact_at(&mut h, 0)?;
        let header = match FileHeader::decode(&h, magic) {
            Ok(header) => header,
            Err(kind) => return Err(Error::corrupt(path, 0, kind)),
        };
        if header.file_id != id {
            let kind = CorruptionKind::NameMismatch {
                name_id: id,
                header_id: header.file_id,
            };
            return Err(Error::corrupt(path, HEADER_FILE_ID as u64, kind));
        }
        let data = DataFile {
            id,
            path,
            file: Arc::new(file),
            salt: header.salt,
            version: header.version,
        };
        Ok((data, header))
    }

    /// Reads the value of `key` at `at`: one positional read, the record's CRC checked, and
    /// the record checked to be the one the index meant (same key, same seq), else
    /// [`CorruptionKind::KeyMismatch`].
    pub fn read_value(&self, key: &[u8], at: ValueRef) -> Result<Vec<u8>> {
        let len = record_len(key.len(), at.value_len as usize);
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
        self.file.read_exact_at(&mut buf, at.offset)?;
        let r = decode_record(&buf, self.salt, self.version)
            .map_err(|e| Error::corrupt(&self.path, at.offset, e))?;
        // The place must describe this very record: its key, its seq, and its value's length
        // (a crafted hint claiming a longer value must not pull in the next record's bytes).
        if r.key != key || r.seq != at.seq || r.is_seal() || r.value.len() != at.value_len as usize
        {
            let kind = CorruptionKind::KeyMismatch {
                expected_seq: at.seq,
                found_seq: r.seq,
            };
            return Err(Error::corrupt(&self.path, at.offset, kind));
        }
        // The value is the record's last bytes (the buffer holds exactly the record: its
        // length was checked above): move it to the front rather than allocate a second one.
        let start = RECORD_HEADER_LEN + key.len();
        buf.drain(..start);
        Ok(buf)
    }

    /// The file's length, checked against the format's bound ([`MAX_FILE_LEN`]): a longer
    /// file (say, extended sparse to 64 GiB) is [`CorruptionKind::OutOfRange`] naming the
    /// file, before anything is read or allocated for it.
    pub fn checked_len(&self) -> Result<u64> {
        let len = self.file.len()?;
        if len > MAX_FILE_LEN {
            let kind = CorruptionKind::OutOfRange {
                what: "file length",
                value: len,
                max: MAX_FILE_LEN,
            };
            return Err(Error::corrupt(&self.path, MAX_FILE_LEN, kind));
        }
        Ok(len)
    }

    /// The file read in chunks ([`durable_fs::Chunks`], one reusable buffer), after
    /// [`DataFile::checked_len`]: what a scan reads, in memory bounded whatever the file's
    /// length.
    pub fn chunks(&self) -> Result<durable_fs::Chunks<'_>> {
        Ok(durable_fs::Chunks::new(&self.file, self.checked_len()?))
    }

    /// Appends a seal at `end` (where the file's records end; anything after is cut) saying
    /// every record before it, the last of seq `seq`, is durable, and syncs. Call it only once
    /// those records are durable: at open, after recovery synced what it read. Format 2 only
    /// (a format-1 file knows no seal: nothing is written).
    pub fn append_seal(&self, end: u64, seq: u64) -> Result<()> {
        if self.version != crate::format::VERSION {
            return Ok(());
        }
        let mut seal = Vec::with_capacity(RECORD_HEADER_LEN);
        crate::format::encode_seal(&mut seal, self.salt, seq);
        self.file.write_all_at(&seal, end)?;
        self.file.set_len(end + seal.len() as u64)?;
        self.file.sync_data()?;
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::format::encode_record;

    /// A place whose value length disagrees with the record (a crafted hint or index) is
    /// refused, never answered with another record's bytes.
    #[test]
    fn read_value_checks_the_places_value_length() {
        let sim = durable_fs::sim::SimFs::new();
        let fs = sim.durable();
        fs.create_dir_all(std::path::Path::new("/d")).unwrap();
        let magic = *b"\x89TST\r\n\x1a\n";
        let path = PathBuf::from("/d/1.data");
        let data = DataFile::create(&fs, path, &magic, 1, FileKind::Written).unwrap();
        let mut buf = Vec::new();
        encode_record(&mut buf, data.salt, 1, 0, 0, b"a", b"first");
        let second = FILE_HEADER_LEN as u64 + buf.len() as u64;
        encode_record(&mut buf, data.salt, 2, 0, 0, b"b", b"second");
        data.file
            .write_all_at(&buf, FILE_HEADER_LEN as u64)
            .unwrap();
        let at = |value_len| ValueRef {
            seq: 1,
            offset: FILE_HEADER_LEN as u64,
            value_len,
        };
        assert_eq!(data.read_value(b"a", at(5)).unwrap(), b"first");
        for wrong in [4, 6, 5 + RECORD_HEADER_LEN as u32 + 7] {
            assert!(
                data.read_value(b"a", at(wrong)).is_err(),
                "value_len {wrong}"
            );
        }
        let b = ValueRef {
            seq: 2,
            offset: second,
            value_len: 6,
        };
        assert_eq!(data.read_value(b"b", b).unwrap(), b"second");
    }
}
