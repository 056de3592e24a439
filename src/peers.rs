//! One interface over our key-value engines and their peers, so benchmarks compare like with
//! like: the same keys, values, thread counts and durability on the same disk.

use std::path::Path;
use std::sync::Arc;

use durable_fs::sim::Rng;

/// The benchmark key for `n`: 16 pseudo-random bytes.
pub fn key(n: u64) -> [u8; 16] {
    let mut r = Rng::new(n);
    let mut k = [0u8; 16];
    r.fill(&mut k);
    k
}

/// The benchmark value for key `n`: 100 pseudo-random (incompressible) bytes, different for
/// every key, so no engine gains from compressing or deduplicating them.
pub fn value(n: u64) -> [u8; 100] {
    let mut r = Rng::new(n ^ 0x9E37_79B9_7F4A_7C15);
    let mut v = [0u8; 100];
    r.fill(&mut v);
    v
}

/// The key-value engines compared, ours first.
pub const ENGINES: [&str; 5] = ["bitcask", "lsm-hash", "fjall", "redb", "sled"];

/// A key-value store under benchmark. Errors panic: a benchmark that fails is not a result.
pub trait Kv: Send + Sync {
    /// Stores `v` under `k` (durable on return when opened with `sync`).
    fn put(&self, k: &[u8], v: &[u8]);
    /// Reads `k`.
    fn get(&self, k: &[u8]) -> Option<Vec<u8>>;
}

#[expect(
    clippy::unwrap_used,
    reason = "benchmark adapters: an error ends the run"
)]
mod adapters {
    use super::Kv;

    /// Either of our engines, through their one face ([`kv_core::KvStore`]; static
    /// dispatch, so the adapter costs nothing).
    pub struct Ours<S>(pub S);
    impl<S: kv_core::KvStore> Kv for Ours<S> {
        fn put(&self, k: &[u8], v: &[u8]) {
            let mut b = kv_core::WriteBatch::new();
            b.put(k, v);
            self.0.write(b).unwrap();
        }
        fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
            self.0.get(k).unwrap()
        }
    }

    pub struct Fjall(pub fjall::Database, pub fjall::Keyspace, pub bool);
    impl Kv for Fjall {
        fn put(&self, k: &[u8], v: &[u8]) {
            self.1.insert(k, v).unwrap();
            if self.2 {
                self.0.persist(fjall::PersistMode::SyncData).unwrap();
            }
        }
        fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
            self.1.get(k).unwrap().map(|v| v.to_vec())
        }
    }

    pub const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("t");
    pub struct Redb(pub redb::Database, pub bool);
    impl Kv for Redb {
        fn put(&self, k: &[u8], v: &[u8]) {
            let mut txn = self.0.begin_write().unwrap();
            if !self.1 {
                txn.set_durability(redb::Durability::None).unwrap();
            }
            txn.open_table(REDB_TABLE).unwrap().insert(k, v).unwrap();
            txn.commit().unwrap();
        }
        fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
            use redb::ReadableDatabase;
            let r = self.0.begin_read().unwrap();
            let t = r.open_table(REDB_TABLE).unwrap();
            t.get(k).unwrap().map(|v| v.value().to_vec())
        }
    }

    pub struct Sled(pub sled::Db, pub bool);
    impl Kv for Sled {
        fn put(&self, k: &[u8], v: &[u8]) {
            self.0.insert(k, v).unwrap();
            if self.1 {
                self.0.flush().unwrap();
            }
        }
        fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
            self.0.get(k).unwrap().map(|v| v.to_vec())
        }
    }
}

/// Opens engine `name` (one of [`ENGINES`]) in `dir`; with `sync`, every put is durable when
/// it returns (ours: `SyncPolicy::Always`; fjall: `persist(SyncData)`; redb:
/// `Durability::Immediate`; sled: `flush`).
pub fn open(name: &str, dir: &Path, sync: bool) -> Result<Arc<dyn Kv>, String> {
    let e = |e: &dyn std::fmt::Display| format!("{name}: {e}");
    let policy = if sync {
        kv_core::SyncPolicy::Always
    } else {
        kv_core::SyncPolicy::Never
    };
    Ok(match name {
        "bitcask" => {
            let opts = bitcask::Options::default().with_sync(policy);
            let db = bitcask::Bitcask::open(dir, opts).map_err(|x| e(&x))?;
            Arc::new(adapters::Ours(db))
        }
        "lsm-hash" => {
            let opts = lsm_hash::Options::default().with_sync(policy);
            let db = lsm_hash::LsmHash::open(dir, opts).map_err(|x| e(&x))?;
            Arc::new(adapters::Ours(db))
        }
        "fjall" => {
            let db = fjall::Database::builder(dir).open().map_err(|x| e(&x))?;
            let ks = db
                .keyspace("bench", fjall::KeyspaceCreateOptions::default)
                .map_err(|x| e(&x))?;
            Arc::new(adapters::Fjall(db, ks, sync))
        }
        "redb" => {
            let db = redb::Database::create(dir.join("redb")).map_err(|x| e(&x))?;
            let txn = db.begin_write().map_err(|x| e(&x))?;
            txn.open_table(adapters::REDB_TABLE).map_err(|x| e(&x))?;
            txn.commit().map_err(|x| e(&x))?;
            Arc::new(adapters::Redb(db, sync))
        }
        "sled" => Arc::new(adapters::Sled(sled::open(dir).map_err(|x| e(&x))?, sync)),
        other => return Err(format!("unknown engine {other}")),
    })
}
