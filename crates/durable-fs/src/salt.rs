//! [`random_salt`]: the per-file salt mixed into every record checksum.

use std::hash::{BuildHasher, Hasher};

/// A random 32-bit salt for a new file. Every engine mixes its file's salt into each record's
/// CRC, so bytes left over from an older file (a reused name, preallocated space, a stale
/// page written back late) never validate as records of the new one.
///
/// Drawn from the process's random hasher keys (seeded by the OS), `seed` (the file id or
/// first LSN) and the time, so two files created in one process differ too.
///
/// ```
/// let (a, b) = (durable_fs::random_salt(1), durable_fs::random_salt(1));
/// # let _ = (a, b);
/// // a and b differ with overwhelming probability; both are valid salts.
/// ```
pub fn random_salt(seed: u64) -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(seed);
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    #[test]
    fn salts_of_one_seed_differ() {
        let salts: std::collections::HashSet<u32> =
            (0..64).map(|_| super::random_salt(7)).collect();
        assert!(salts.len() > 60, "{} distinct of 64", salts.len());
    }
}
