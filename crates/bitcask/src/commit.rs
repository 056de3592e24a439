//! The merge commit: the `MERGE` marker (which files a merge replaces with which), and the
//! roll-forward that finishes a committed merge at open.

use std::path::Path;

use durable_fs::DurableFs;
use kv_core::{CorruptionKind, Error, Result, marker};

use crate::format::{data_name, hint_name, merge_name};

/// The name of the merge commit marker.
pub const MERGE_MARKER: &str = "MERGE";

/// The name of the list of the store's data files.
pub const FILES: &str = "FILES";

/// The longest files list read (64 MiB: about six million data files, more than a store
/// can have, its ids being 32-bit and merged away): a longer one is `BadManifest`.
pub const MAX_FILES_LEN: u64 = 64 << 20;

/// The files list's first line (format 1).
const FILES_TITLE: &str = "bitcask-files 1";

/// The list of the store's data files (`FILES`), replaced atomically whenever the set
/// changes: a new data file (at open, at rotation) is listed before anything is written to
/// it, and a merge's outputs replace its inputs in the list after the merge committed and
/// before an input is removed. At open, a listed file that is missing is corruption
/// (`MissingFile`), never a store that silently lost the keys it held.
pub(crate) fn encode_files(ids: &std::collections::BTreeSet<u64>) -> Vec<u8> {
    let ids: Vec<u64> = ids.iter().copied().collect();
    marker::encode(FILES_TITLE, &[("data", &ids)])
}

/// Reads the files list in `dir`: `None` when there is none (a store written before format 2,
/// or one whose creation a crash cut first); a damaged one is `BadManifest`.
pub(crate) fn read_files(fs: &DurableFs, dir: &Path) -> Result<Option<Vec<u64>>> {
    let path = dir.join(FILES);
    if !fs.exists(&path)? {
        return Ok(None);
    }
    kv_core::read_at_most(fs, &path, MAX_FILES_LEN)?
        .and_then(|b| marker::decode(&b, FILES_TITLE, &["data"]))
        .and_then(|lists| lists.into_iter().next())
        .map(Some)
        .ok_or_else(|| Error::corrupt(path, 0, CorruptionKind::BadManifest))
}

/// The marker's first line (format 1).
const TITLE: &str = "bitcask-merge 1";

/// The commit marker: which files the merge replaces with which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MergeMarker {
    pub inputs: Vec<u64>,
    pub outputs: Vec<u64>,
}

impl MergeMarker {
    pub fn encode(&self) -> Vec<u8> {
        marker::encode(
            TITLE,
            &[("inputs", &self.inputs), ("outputs", &self.outputs)],
        )
    }

    pub fn decode(b: &[u8]) -> Option<MergeMarker> {
        let mut lists = marker::decode(b, TITLE, &["inputs", "outputs"])?.into_iter();
        Some(MergeMarker {
            inputs: lists.next()?,
            outputs: lists.next()?,
        })
    }

    /// Reads the marker in `dir`; a damaged one is corruption.
    pub fn read(fs: &DurableFs, dir: &Path) -> Result<MergeMarker> {
        let path = dir.join(MERGE_MARKER);
        kv_core::read_at_most(fs, &path, kv_core::MAX_MARKER_LEN)?
            .and_then(|b| MergeMarker::decode(&b))
            .ok_or_else(|| Error::corrupt(path, 0, CorruptionKind::BadMergeMarker))
    }
}

/// Finishes a committed merge (steps 4-6 of the merge recipe), at open.
pub(crate) fn roll_forward(fs: &DurableFs, dir: &Path, m: &MergeMarker) -> Result<()> {
    for &id in &m.outputs {
        let staged = dir.join(merge_name(id));
        let data = dir.join(data_name(id));
        if fs.exists(&staged)? {
            fs.rename(&staged, &data)?;
        } else if !fs.exists(&data)? {
            let path = dir.join(MERGE_MARKER);
            return Err(Error::corrupt(path, 0, CorruptionKind::BadMergeMarker));
        }
    }
    for &id in &m.inputs {
        for name in [data_name(id), hint_name(id)] {
            let p = dir.join(name);
            if fs.exists(&p)? {
                fs.remove_file(&p)?;
            }
        }
    }
    fs.remove_file(&dir.join(MERGE_MARKER))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_and_rejects_damage() {
        let m = MergeMarker {
            inputs: vec![1, 2, 5],
            outputs: vec![9],
        };
        let b = m.encode();
        assert!(b.starts_with(b"bitcask-merge 1\ninputs 1 2 5\noutputs 9\ncrc "));
        assert_eq!(MergeMarker::decode(&b), Some(m));
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x01;
            assert_eq!(MergeMarker::decode(&d), None, "flip at {i}");
        }
    }
}
