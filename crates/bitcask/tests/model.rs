//! Model-based property test: random puts, deletes, batches, merges, reopens and reads,
//! checked after every step against a `HashMap`, on the simulated filesystem with tiny data
//! files (so rotation, hints and merges happen constantly) and a tiny handle cache.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::HashMap;

use bitcask::{Bitcask, Options, SyncPolicy, WriteBatch};
use durable_fs::sim::SimFs;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Put(u8, Vec<u8>),
    Delete(u8),
    Batch(Vec<(u8, Option<Vec<u8>>)>),
    Get(u8),
    Merge,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let value = proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        6 => (0u8..16, value.clone()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..16).prop_map(Op::Delete),
        2 => proptest::collection::vec((0u8..16, proptest::option::of(value)), 1..5).prop_map(Op::Batch),
        3 => (0u8..16).prop_map(Op::Get),
        1 => Just(Op::Merge),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn behaves_like_a_hashmap(ops in proptest::collection::vec(op(), 1..60), sync_always: bool) {
        let sim = SimFs::new();
        let opts = Options::default()
            .with_fs(sim.durable())
            .with_max_file_bytes(4096)
            .with_max_open_files(2)
            .with_sync(if sync_always { SyncPolicy::Always } else { SyncPolicy::Never });
        let mut db = Bitcask::open("/db", opts.clone()).unwrap();
        let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    db.put(&key(k), &v).unwrap();
                    model.insert(key(k), v);
                }
                Op::Delete(k) => {
                    let existed = db.delete(&key(k)).unwrap();
                    prop_assert_eq!(existed, model.remove(&key(k)).is_some());
                }
                Op::Batch(items) => {
                    let mut b = WriteBatch::new();
                    for (k, v) in &items {
                        match v {
                            Some(v) => b.put(&key(*k), v),
                            None => b.delete(&key(*k)),
                        }
                    }
                    db.write(b).unwrap();
                    for (k, v) in items {
                        match v {
                            Some(v) => { model.insert(key(k), v); }
                            None => { model.remove(&key(k)); }
                        }
                    }
                }
                Op::Get(k) => prop_assert_eq!(db.get(&key(k)).unwrap(), model.get(&key(k)).cloned()),
                Op::Merge => {
                    db.compact().unwrap();
                }
                Op::Reopen => {
                    db.close().unwrap();
                    db = Bitcask::open("/db", opts.clone()).unwrap();
                }
            }
            prop_assert_eq!(db.len().unwrap(), model.len());
            prop_assert!(db.stats().open_handles <= 2);
        }
        let all: HashMap<Vec<u8>, Vec<u8>> = db.iter().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(&all, &model);
        db.close().unwrap();
        let db = Bitcask::open("/db", opts).unwrap();
        let all: HashMap<Vec<u8>, Vec<u8>> = db.iter().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(all, model);
    }
}
