//! The read cache of both key-value engines. Proves: a second get of a key is served without
//! a disk read (and with `cache_bytes(0)` it is not); values stay right across overwrites,
//! deletes and a merge / compaction that moves every record, and stay hits through it (a seq
//! and a key name one record for the life of a store handle); and a cached value is not served once the store is poisoned
//! (fail-stop holds for hits too).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use durable_fs::sim::{Fault, FaultError, OpKind, SimFs};
use kv_core::{Error, KvStore, WriteBatch};

fn open(engine: &str, sim: &SimFs, cache_bytes: u64) -> Box<dyn KvStore> {
    match engine {
        "bitcask" => Box::new(
            bitcask::Bitcask::open(
                "/db",
                bitcask::Options::default()
                    .with_fs(sim.durable())
                    .with_max_file_bytes(4096)
                    .with_cache_bytes(cache_bytes),
            )
            .unwrap(),
        ),
        _ => Box::new(
            lsm_hash::LsmHash::open(
                "/db",
                lsm_hash::Options::default()
                    .with_fs(sim.durable())
                    .with_max_file_bytes(4096)
                    .with_cache_bytes(cache_bytes),
            )
            .unwrap(),
        ),
    }
}

fn put(db: &dyn KvStore, k: &str, v: &str) {
    let mut b = WriteBatch::new();
    b.put(k.as_bytes(), v.as_bytes());
    db.write(b).unwrap();
}

#[test]
fn hits_skip_the_disk_and_never_go_stale() {
    for engine in ["bitcask", "lsm-hash"] {
        for cache_bytes in [0u64, 1 << 20] {
            let sim = SimFs::new();
            let db = open(engine, &sim, cache_bytes);
            for i in 0..100 {
                put(&*db, &format!("k{i}"), &format!("v{i}"));
            }
            assert_eq!(db.get(b"k7").unwrap(), Some(b"v7".to_vec()));
            let reads = sim.ops_of(OpKind::Read);
            assert_eq!(db.get(b"k7").unwrap(), Some(b"v7".to_vec()));
            let again = sim.ops_of(OpKind::Read) - reads;
            if cache_bytes == 0 {
                assert!(again > 0, "{engine}: no cache, yet no read");
            } else {
                assert_eq!(again, 0, "{engine}: a cached value was read again");
            }
            // Overwrites, deletes and a compaction move records: every get stays right.
            for i in 0..100 {
                if i % 3 == 0 {
                    put(&*db, &format!("k{i}"), &format!("w{i}"));
                }
            }
            assert!(db.delete(b"k8").unwrap());
            for i in 0..100 {
                db.get(format!("k{i}").as_bytes()).unwrap();
            }
            db.compact().unwrap();
            // A value cached before the merge / compaction moved its record is still a hit:
            // the cache names records by seq and key, which the move keeps.
            let reads = sim.ops_of(OpKind::Read);
            assert_eq!(db.get(b"k1").unwrap(), Some(b"v1".to_vec()));
            let after_move = sim.ops_of(OpKind::Read) - reads;
            if cache_bytes > 0 {
                assert_eq!(after_move, 0, "{engine}: the move made a cached value miss");
            }
            for i in 0..100 {
                let want = match i {
                    8 => None,
                    i if i % 3 == 0 => Some(format!("w{i}").into_bytes()),
                    i => Some(format!("v{i}").into_bytes()),
                };
                assert_eq!(
                    db.get(format!("k{i}").as_bytes()).unwrap(),
                    want,
                    "{engine}"
                );
            }
            db.close().unwrap();
        }
    }
}

#[test]
fn a_poisoned_store_serves_no_cached_value() {
    for engine in ["bitcask", "lsm-hash"] {
        let sim = SimFs::new();
        let db = open(engine, &sim, 1 << 20);
        put(&*db, "k", "v");
        assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec())); // now cached
        sim.inject(Fault::once(
            OpKind::Sync,
            sim.ops_of(OpKind::Sync) + 1,
            FaultError::Eio,
        ));
        let mut b = WriteBatch::new();
        b.put(b"doomed", b"x");
        assert!(db.write(b).is_err());
        assert!(
            matches!(db.get(b"k"), Err(Error::Poisoned(_))),
            "{engine}: a cached value after a failed fsync"
        );
    }
}
