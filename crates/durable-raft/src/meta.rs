//! `RAFT-META`: the vote and the last purged log id, in one small file replaced atomically.
//!
//! Layout (little-endian, 60 bytes; `docs/FORMAT-raft.md`, tested against this code):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `\x89RFT\r\n\x1a\n` |
//! | 8 | 4 | format version, 1 |
//! | 12 | 1 | flags: bit 0 a vote is stored, bit 1 the vote is committed, bit 2 a purged id is stored |
//! | 13 | 3 | zero |
//! | 16 | 8 | vote term |
//! | 24 | 8 | vote node id |
//! | 32 | 8 | last purged term |
//! | 40 | 8 | last purged node id (the leader that wrote the entry) |
//! | 48 | 8 | last purged index |
//! | 56 | 4 | CRC-32 (IEEE) of bytes 0..56 |

use std::path::Path;

use durable_fs::{Access, DurableFs};
use openraft::{CommittedLeaderId, LeaderId};

use crate::error::{Error, Result};
use crate::types::{LogId, Vote};

/// The file's name in a log directory.
pub const META_FILE: &str = "RAFT-META";
/// Its magic bytes.
pub const META_MAGIC: [u8; 8] = *b"\x89RFT\r\n\x1a\n";
/// Its format version.
pub const META_VERSION: u32 = 1;
/// Its length in bytes.
pub const META_LEN: usize = 60;

const VOTE: u8 = 1;
const VOTE_COMMITTED: u8 = 2;
const PURGED: u8 = 4;

/// What `RAFT-META` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// The last vote saved.
    pub vote: Option<Vote>,
    /// The id of the last purged entry: every entry up to its index is gone.
    pub last_purged: Option<LogId>,
}

fn put_u64(buf: &mut [u8; META_LEN], at: usize, v: u64) {
    if let Some(dst) = buf.get_mut(at..at + 8) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = buf.get(at..at + 8) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

impl Meta {
    /// The file's bytes.
    pub fn encode(&self) -> [u8; META_LEN] {
        let mut b = [0u8; META_LEN];
        if let Some(dst) = b.get_mut(0..8) {
            dst.copy_from_slice(&META_MAGIC);
        }
        if let Some(dst) = b.get_mut(8..12) {
            dst.copy_from_slice(&META_VERSION.to_le_bytes());
        }
        let mut flags = 0u8;
        if let Some(v) = &self.vote {
            flags |= VOTE;
            if v.committed {
                flags |= VOTE_COMMITTED;
            }
            put_u64(&mut b, 16, v.leader_id.term);
            put_u64(&mut b, 24, v.leader_id.node_id);
        }
        if let Some(p) = &self.last_purged {
            flags |= PURGED;
            put_u64(&mut b, 32, p.leader_id.term);
            put_u64(&mut b, 40, p.leader_id.node_id);
            put_u64(&mut b, 48, p.index);
        }
        if let Some(f) = b.get_mut(12) {
            *f = flags;
        }
        let crc = crc32fast::hash(b.get(..56).unwrap_or_default());
        if let Some(dst) = b.get_mut(56..60) {
            dst.copy_from_slice(&crc.to_le_bytes());
        }
        b
    }

    /// Decodes the file's bytes; `path` names the file in errors.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Meta> {
        if bytes.len() != META_LEN {
            return Err(Error::corrupt(
                path,
                0,
                format!("{} bytes, expected {META_LEN}", bytes.len()),
            ));
        }
        if bytes.get(0..8) != Some(&META_MAGIC[..]) {
            return Err(Error::corrupt(path, 0, "bad magic"));
        }
        let stored = u32::from_le_bytes(
            bytes
                .get(56..60)
                .and_then(|s| s.try_into().ok())
                .unwrap_or_default(),
        );
        if crc32fast::hash(bytes.get(..56).unwrap_or_default()) != stored {
            return Err(Error::corrupt(path, 56, "checksum mismatch"));
        }
        let version = u32::from_le_bytes(
            bytes
                .get(8..12)
                .and_then(|s| s.try_into().ok())
                .unwrap_or_default(),
        );
        if version != META_VERSION {
            return Err(Error::corrupt(
                path,
                8,
                format!("format version {version}; this build reads {META_VERSION}"),
            ));
        }
        let flags = bytes.get(12).copied().unwrap_or(0);
        if flags & !(VOTE | VOTE_COMMITTED | PURGED) != 0
            || bytes.get(13..16) != Some(&[0u8; 3][..])
        {
            return Err(Error::corrupt(
                path,
                12,
                format!("unknown flags {flags:#x}"),
            ));
        }
        let vote = (flags & VOTE != 0).then(|| {
            let leader_id = LeaderId::new(get_u64(bytes, 16), get_u64(bytes, 24));
            Vote {
                leader_id,
                committed: flags & VOTE_COMMITTED != 0,
            }
        });
        let last_purged = (flags & PURGED != 0).then(|| {
            LogId::new(
                CommittedLeaderId::new(get_u64(bytes, 32), get_u64(bytes, 40)),
                get_u64(bytes, 48),
            )
        });
        Ok(Meta { vote, last_purged })
    }

    /// Reads `dir/RAFT-META`; absent means nothing saved yet. Damage is an error naming the
    /// file, never "absent".
    pub fn load(fs: &DurableFs, dir: &Path) -> Result<Meta> {
        let path = dir.join(META_FILE);
        if !fs.exists(&path)? {
            return Ok(Meta::default());
        }
        // Sized first: a huge file at this name is refused without reading it.
        let file = fs.open(&path, Access::Read)?;
        let len = file.len()?;
        if len != META_LEN as u64 {
            return Err(Error::corrupt(
                &path,
                0,
                format!("{len} bytes, expected {META_LEN}"),
            ));
        }
        let mut buf = [0u8; META_LEN];
        file.read_exact_at(&mut buf, 0)?;
        Meta::decode(&buf, &path)
    }

    /// Replaces `dir/RAFT-META` atomically and durably.
    pub fn store(&self, fs: &DurableFs, dir: &Path) -> Result<()> {
        fs.atomic_replace(&dir.join(META_FILE), &self.encode())?;
        Ok(())
    }
}
