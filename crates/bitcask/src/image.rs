//! The keydir image (`KEYDIR`): the whole keydir, written at close, so that the next open
//! loads it with a few large sequential reads and one probe of the table per key, instead
//! of rebuilding it from every hint and data file (where building the keydir, not reading,
//! is the cost).
//!
//! An image is bound to the exact data files it describes: each one's id, salt and length.
//! Open uses it only if every one of them is still there, unchanged, and its two checksums
//! hold; the files written since (ids the image does not name) are loaded as usual and
//! applied on top, which is sound only because every record in them is newer than every
//! record the image saw, and that is checked too. Any mismatch, damage or doubt and open
//! falls back to hints and scans: the image is derived data, never the only copy of
//! anything. Layout: `docs/FORMAT-bitcask.md`.

use std::path::Path;

use durable_fs::{Access, DurableFs, File};
use kv_core::format::{FILE_HEADER_LEN, FileHeader, record_len};
use kv_core::key_index::{KeyIndex, Loc};
use kv_core::{Error, Result};

use crate::format::DATA_MAGIC;
use crate::keydir::{FileStats, Keydir};

/// The image's file name.
pub(crate) const IMAGE: &str = "KEYDIR";
/// `89 42 43 4B 0D 0A 1A 0A` ("\x89BCK\r\n\x1a\n").
pub(crate) const IMAGE_MAGIC: [u8; 8] = *b"\x89BCK\r\n\x1a\n";
/// The image format version.
pub(crate) const IMAGE_VERSION: u32 = 1;
/// Header: magic, version, file count, key count, key bytes, max seq, hash seed.
pub(crate) const HEADER_LEN: usize = 48;
/// One covered file: id, length, total and dead bytes, salt, reserved.
pub(crate) const FILE_ENTRY_LEN: usize = 40;
/// One key's entry before its key bytes: seq, file, offset, value length, key length.
pub(crate) const KEY_ENTRY_LEN: usize = 24;
/// More covered files than this is not an image this code wrote.
const MAX_FILES: u32 = 1 << 22;
/// Read and write buffer size.
const BUF: usize = 1 << 20;

/// A data file the image describes, as it was when the image was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Covered {
    pub id: u32,
    pub salt: u32,
    pub len: u64,
    pub stats: FileStats,
}

/// An image's header and file table (checked by their checksum).
#[derive(Debug)]
pub(crate) struct Header {
    pub files: Vec<Covered>,
    pub keys: u64,
    pub key_bytes: u64,
    pub max_seq: u64,
    /// The seed of the keydir that wrote it (its entries are in that keydir's load order).
    pub seed: u64,
    /// The image file's length.
    pub len: u64,
}

impl Header {
    /// Where the key entries start.
    fn entries_at(&self) -> u64 {
        (HEADER_LEN + self.files.len() * FILE_ENTRY_LEN + 4) as u64
    }
}

/// A loaded image: the keydir of the covered files, and their highest seq.
#[derive(Debug)]
pub(crate) struct Image {
    pub keydir: Keydir,
    pub max_seq: u64,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The header and file table of `bytes` (a prefix of the image at least that long).
pub(crate) fn encode_header(
    files: &[Covered],
    (keys, key_bytes): (u64, u64),
    max_seq: u64,
    seed: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + files.len() * FILE_ENTRY_LEN + 4);
    out.extend_from_slice(&IMAGE_MAGIC);
    out.extend_from_slice(&IMAGE_VERSION.to_le_bytes());
    out.extend_from_slice(&(files.len() as u32).to_le_bytes());
    out.extend_from_slice(&keys.to_le_bytes());
    out.extend_from_slice(&key_bytes.to_le_bytes());
    out.extend_from_slice(&max_seq.to_le_bytes());
    out.extend_from_slice(&seed.to_le_bytes());
    for f in files {
        out.extend_from_slice(&u64::from(f.id).to_le_bytes());
        out.extend_from_slice(&f.len.to_le_bytes());
        out.extend_from_slice(&f.stats.total.to_le_bytes());
        out.extend_from_slice(&f.stats.dead.to_le_bytes());
        out.extend_from_slice(&f.salt.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes the header and file table from the start of an image of `len` bytes; `None` when
/// they are damaged or describe a file of another length.
pub(crate) fn decode_header(b: &[u8], len: u64) -> Option<Header> {
    if b.get(..8)? != IMAGE_MAGIC || u32_at(b, 8)? != IMAGE_VERSION {
        return None;
    }
    let nfiles = u32_at(b, 12)?;
    if nfiles > MAX_FILES {
        return None;
    }
    let table_end = HEADER_LEN + nfiles as usize * FILE_ENTRY_LEN;
    if crc32fast::hash(b.get(..table_end)?) != u32_at(b, table_end)? {
        return None;
    }
    let (keys, key_bytes, max_seq) = (u64_at(b, 16)?, u64_at(b, 24)?, u64_at(b, 32)?);
    let seed = u64_at(b, 40)?;
    let mut files = Vec::with_capacity(nfiles as usize);
    for i in 0..nfiles as usize {
        let at = HEADER_LEN + i * FILE_ENTRY_LEN;
        let id = u32::try_from(u64_at(b, at)?).ok()?;
        let stats = FileStats {
            total: u64_at(b, at + 16)?,
            dead: u64_at(b, at + 24)?,
        };
        if stats.dead > stats.total || u32_at(b, at + 36)? != 0 {
            return None;
        }
        let salt = u32_at(b, at + 32)?;
        let len = u64_at(b, at + 8)?;
        files.push(Covered {
            id,
            salt,
            len,
            stats,
        });
    }
    // Ids strictly ascending: none twice.
    if files
        .windows(2)
        .any(|w| matches!(w, [a, b] if a.id >= b.id))
    {
        return None;
    }
    // The exact length the counts imply: no allocation below is larger than the file.
    let entries = keys
        .checked_mul(KEY_ENTRY_LEN as u64)?
        .checked_add(key_bytes)?;
    let want = (table_end as u64 + 4)
        .checked_add(entries)?
        .checked_add(4)?;
    (want == len).then_some(Header {
        files,
        keys,
        key_bytes,
        max_seq,
        seed,
        len,
    })
}

/// What [`read_header`] found.
pub(crate) enum Found {
    /// No image.
    Absent,
    /// An image whose header or file table does not decode.
    Damaged,
    /// An image's header, and the image itself, open: everything else is read from this one
    /// open file, so a writer replacing the image meanwhile cannot mix two images.
    Image(Header, File),
}

/// Reads the header of `dir`'s image. An error reading it (not damage: the file could not be
/// read) is an `Err`.
pub(crate) fn read_header(fs: &DurableFs, dir: &Path) -> Result<Found> {
    let path = dir.join(IMAGE);
    let file = match fs.open(&path, Access::Read) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(Found::Absent),
        Err(e) => return Err(e.into()),
    };
    let len = file.len()?;
    let mut head = [0u8; HEADER_LEN];
    if len < HEADER_LEN as u64 {
        return Ok(Found::Damaged);
    }
    file.read_exact_at(&mut head, 0)?;
    let Some(nfiles) = u32_at(&head, 12).filter(|&n| n <= MAX_FILES) else {
        return Ok(Found::Damaged);
    };
    let table = HEADER_LEN + nfiles as usize * FILE_ENTRY_LEN + 4;
    if (table as u64) > len {
        return Ok(Found::Damaged);
    }
    let mut b = vec![0u8; table];
    file.read_exact_at(&mut b, 0)?;
    Ok(match decode_header(&b, len) {
        Some(h) => Found::Image(h, file),
        None => Found::Damaged,
    })
}

/// True when every file `header` covers is there, listed, with the salt and length it had
/// (`path` gives where a listed file id is read from; `None` for one not listed).
pub(crate) fn bound(
    fs: &DurableFs,
    header: &Header,
    path: impl Fn(u64) -> Option<std::path::PathBuf>,
) -> bool {
    header.files.iter().all(|c| {
        let Some(p) = path(u64::from(c.id)) else {
            return false;
        };
        let Ok(file) = fs.open(&p, Access::Read) else {
            return false;
        };
        let mut h = [0u8; FILE_HEADER_LEN];
        file.len().is_ok_and(|len| len == c.len)
            && file.read_exact_at(&mut h, 0).is_ok()
            && FileHeader::decode(&h, &DATA_MAGIC)
                .is_ok_and(|h| h.salt == c.salt && h.file_id == u64::from(c.id))
    })
}

/// Reads the key entries of the image `header` came from into a keydir; `None` when
/// anything is wrong: a checksum, a count, a key twice, an entry naming a file the image
/// does not cover or a record past that file's length.
/// `extra`: keys and key bytes to leave room for (the files applied on top), so that they
/// do not grow the keydir by doubling.
pub(crate) fn load(file: &File, header: &Header, extra: (usize, usize)) -> Option<Image> {
    let covered = Lens::new(&header.files);
    // No more keys than the covered files could hold (a record is at least its header), and
    // an allocation that cannot be made is a reason not to use the image, not to abort.
    let data = header
        .files
        .iter()
        .fold(0u64, |a, c| a.saturating_add(c.len));
    let most = data / kv_core::format::RECORD_HEADER_LEN as u64;
    if header.keys > most || header.key_bytes > data {
        return None;
    }
    let mut map = KeyIndex::with_seed(header.seed);
    let sizes = (
        usize::try_from(header.keys).ok()?,
        usize::try_from(header.key_bytes).ok()?,
    );
    let with_extra = (
        sizes.0.saturating_add(extra.0),
        sizes.1.saturating_add(extra.1),
    );
    if !map.try_reserve(with_extra.0, with_extra.1) && !map.try_reserve(sizes.0, sizes.1) {
        return None;
    }
    let end = header.len - 4;
    let mut rd = Reader {
        file,
        at: header.entries_at(),
        end,
        buf: Vec::with_capacity(BUF),
        pos: 0,
        crc: crc32fast::Hasher::new(),
    };
    let mut key_bytes = 0u64;
    for _ in 0..header.keys {
        let e = rd.take(KEY_ENTRY_LEN)?;
        let seq = u64_at(e, 0)?;
        let loc = Loc {
            seq,
            file: u32_at(e, 8)?,
            offset: u32_at(e, 12)?,
            value_len: u32_at(e, 16)?,
        };
        let key_len = u32_at(e, 20)? as usize;
        let key = rd.take(key_len)?;
        let file_len = covered.get(loc.file)?;
        let rec_end = u64::from(loc.offset) + record_len(key_len, loc.value_len as usize);
        if seq > header.max_seq
            || u64::from(loc.offset) < FILE_HEADER_LEN as u64
            || rec_end > file_len
        {
            return None;
        }
        key_bytes += key_len as u64;
        if !map.insert_new(key, loc) {
            return None;
        }
    }
    if key_bytes != header.key_bytes || rd.at != end || rd.pos != rd.buf.len() {
        return None;
    }
    let mut trailer = [0u8; 4];
    file.read_exact_at(&mut trailer, end).ok()?;
    if rd.crc.finalize() != u32::from_le_bytes(trailer) {
        return None;
    }
    let files = header.files.iter().map(|c| (c.id, c.stats)).collect();
    Some(Image {
        keydir: Keydir { map, files },
        max_seq: header.max_seq,
    })
}

/// True when `a` and `b` hold the same keys at the same locations (the per-file byte
/// counts, merge heuristics, are not compared).
pub(crate) fn same(a: &Keydir, b: &Keydir) -> bool {
    a.map.len() == b.map.len() && a.map.iter().all(|(k, loc)| b.map.get(k) == Some(loc))
}

/// Covered file id -> length, looked up once per key: a table indexed by id when the ids
/// are dense enough (they usually are: ids are allocated in order), else a binary search.
enum Lens {
    Dense { first: u32, lens: Vec<Option<u64>> },
    Sorted(Vec<(u32, u64)>),
}

impl Lens {
    fn new(files: &[Covered]) -> Lens {
        let (Some(first), Some(last)) = (files.first(), files.last()) else {
            return Lens::Sorted(Vec::new());
        };
        let span = (last.id - first.id) as usize + 1;
        if span > files.len() * 16 + 1024 {
            return Lens::Sorted(files.iter().map(|c| (c.id, c.len)).collect());
        }
        let mut lens = vec![None; span];
        for c in files {
            if let Some(slot) = lens.get_mut((c.id - first.id) as usize) {
                *slot = Some(c.len);
            }
        }
        Lens::Dense {
            first: first.id,
            lens,
        }
    }

    fn get(&self, id: u32) -> Option<u64> {
        match self {
            Lens::Dense { first, lens } => *lens.get(id.checked_sub(*first)? as usize)?,
            Lens::Sorted(v) => v
                .binary_search_by_key(&id, |&(i, _)| i)
                .ok()
                .and_then(|i| v.get(i))
                .map(|&(_, len)| len),
        }
    }
}

/// Reads the entries section forward through one buffer, checksumming what it reads.
struct Reader<'a> {
    file: &'a File,
    /// File offset of the next byte to read into `buf`.
    at: u64,
    end: u64,
    buf: Vec<u8>,
    /// Parse position in `buf`.
    pos: usize,
    crc: crc32fast::Hasher,
}

impl Reader<'_> {
    /// The next `n` bytes; `None` past the end of the section or on a read error.
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.buf.len() - self.pos < n {
            self.buf.drain(..self.pos);
            self.pos = 0;
            let want = (n - self.buf.len()).max(BUF) as u64;
            let more = want.min(self.end - self.at) as usize;
            let old = self.buf.len();
            if old + more < n {
                return None;
            }
            self.buf.resize(old + more, 0);
            let fresh = self.buf.get_mut(old..)?;
            self.file.read_exact_at(fresh, self.at).ok()?;
            self.crc.update(fresh);
            self.at += more as u64;
        }
        let out = self.buf.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(out)
    }
}

/// Writes the image of `keydir` (whose files are exactly `files`, with `max_seq` the highest
/// seq in them) into `dir`, atomically and durably, streaming through one buffer.
pub(crate) fn write(
    fs: &DurableFs,
    dir: &Path,
    keydir: &Keydir,
    files: &[Covered],
    max_seq: u64,
) -> Result<()> {
    let key_bytes: u64 = keydir.map.iter().map(|(k, _)| k.len() as u64).sum();
    let counts = (keydir.map.len() as u64, key_bytes);
    let header = encode_header(files, counts, max_seq, keydir.map.seed());
    fs.atomic_replace_with(&dir.join(IMAGE), |f| {
        f.write_all_at(&header, 0)?;
        let mut at = header.len() as u64;
        let mut crc = crc32fast::Hasher::new();
        let mut buf = Vec::with_capacity(BUF + 4096);
        for (key, loc) in keydir.map.iter_in_load_order() {
            buf.extend_from_slice(&loc.seq.to_le_bytes());
            buf.extend_from_slice(&loc.file.to_le_bytes());
            buf.extend_from_slice(&loc.offset.to_le_bytes());
            buf.extend_from_slice(&loc.value_len.to_le_bytes());
            buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
            buf.extend_from_slice(key);
            if buf.len() >= BUF {
                crc.update(&buf);
                f.write_all_at(&buf, at)?;
                at += buf.len() as u64;
                buf.clear();
            }
        }
        crc.update(&buf);
        buf.extend_from_slice(&crc.finalize().to_le_bytes());
        f.write_all_at(&buf, at)
    })
    .map_err(Error::from)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn header_round_trips_and_refuses_damage_and_wrong_lengths() {
        let files = [
            Covered {
                id: 3,
                salt: 0xAABB,
                len: 4096,
                stats: FileStats {
                    total: 4064,
                    dead: 10,
                },
            },
            Covered {
                id: 9,
                salt: 7,
                len: 100,
                stats: FileStats { total: 68, dead: 0 },
            },
        ];
        let h = encode_header(&files, (2, 10), 77, 0xFEED);
        let len = h.len() as u64 + 2 * KEY_ENTRY_LEN as u64 + 10 + 4;
        let d = decode_header(&h, len).unwrap();
        assert_eq!(d.files, files);
        assert_eq!(
            (d.keys, d.key_bytes, d.max_seq, d.seed),
            (2, 10, 77, 0xFEED)
        );
        assert!(
            decode_header(&h, len + 1).is_none(),
            "length must match the counts"
        );
        for i in 0..h.len() {
            let mut bad = h.clone();
            bad[i] ^= 0x01;
            assert!(decode_header(&bad, len).is_none(), "flip at {i}");
        }
    }
}
