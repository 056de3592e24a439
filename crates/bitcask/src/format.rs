//! Bitcask's files: their magics and names. The layouts (file header, records, hint entries)
//! are shared with lsm-hash and live in [`kv_core::format`] (`docs/FORMAT-kv-record.md`);
//! the directory, the merge marker and what a crash leaves are in `docs/FORMAT-bitcask.md`.

use kv_core::format::file_name;

/// Data file magic: `89 42 43 44 0D 0A 1A 0A` ("\x89BCD\r\n\x1a\n").
pub(crate) const DATA_MAGIC: [u8; 8] = *b"\x89BCD\r\n\x1a\n";
/// Hint file magic: `89 42 43 48 0D 0A 1A 0A` ("\x89BCH\r\n\x1a\n").
pub(crate) const HINT_MAGIC: [u8; 8] = *b"\x89BCH\r\n\x1a\n";

/// What bitcask tells [`durable_fs::DurableFs::inspect_store`] about its directories: its
/// name (`bitcask`), its format, and the files it owns (data, hint, staged merge outputs, the
/// files list, the merge marker, the keydir image, and their temporaries).
pub const STORE_KIND: durable_fs::StoreKind = durable_fs::StoreKind {
    engine: "bitcask",
    format: kv_core::format::VERSION,
    owns,
    magic,
};

fn owns(name: &str) -> bool {
    use crate::commit::{FILES, MERGE_MARKER};
    use crate::image::IMAGE;
    matches!(
        kv_core::format::parse_name(name),
        Some((_, "data" | "hint" | "merge"))
    ) || name == FILES
        || name == MERGE_MARKER
        || name == IMAGE
        || kv_core::format::is_own_temp(name, &[MERGE_MARKER, FILES, IMAGE], &["hint"])
}

fn magic(name: &str) -> Option<&'static [u8]> {
    match kv_core::format::parse_name(name) {
        Some((_, "data" | "merge")) => Some(&DATA_MAGIC),
        Some((_, "hint")) => Some(&HINT_MAGIC),
        _ if name == crate::image::IMAGE => Some(&crate::image::IMAGE_MAGIC),
        _ => None,
    }
}

/// The name of data file `id`.
pub(crate) fn data_name(id: u64) -> String {
    file_name(id, "data")
}

/// The name of hint file `id`.
pub(crate) fn hint_name(id: u64) -> String {
    file_name(id, "hint")
}

/// The name of merge output `id` before the merge commits.
pub(crate) fn merge_name(id: u64) -> String {
    file_name(id, "merge")
}

/// The keydir's 32-bit form of file id `id` (ids are never reused, so a store would need
/// four billion rotations and merges to run out), or `None` past it: checked, never
/// saturated, so two files can never alias in the keydir.
pub(crate) fn file_id32(id: u64) -> Option<u32> {
    u32::try_from(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(data_name(12), "0000000012.data");
        assert_eq!(hint_name(1), "0000000001.hint");
        assert_eq!(merge_name(7), "0000000007.merge");
        assert_eq!(file_id32(u64::from(u32::MAX)), Some(u32::MAX));
        assert_eq!(file_id32(u64::from(u32::MAX) + 1), None);
    }
}
