//! Model-based property test: random puts, deletes, batches, compactions, reopens and reads,
//! checked after every step against a `HashMap`, with 4 KiB segments on the simulated disk.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::{BTreeMap, HashMap};

use durable_fs::sim::SimFs;
use lsm_hash::{LsmHash, Options, SyncPolicy};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Put(u8, Vec<u8>),
    Delete(u8),
    Batch(Vec<(u8, Option<Vec<u8>>)>),
    Get(u8),
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let value = proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        6 => (0u8..16, value.clone()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..16).prop_map(Op::Delete),
        2 => proptest::collection::vec((0u8..16, proptest::option::of(value)), 1..5).prop_map(Op::Batch),
        3 => (0u8..16).prop_map(Op::Get),
        1 => Just(Op::Compact),
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
            .with_compaction_min_segments(0)
            .with_sync(if sync_always { SyncPolicy::Always } else { SyncPolicy::Never });
        let mut db = LsmHash::open("/db", opts.clone()).unwrap();
        let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    db.put(&key(k), &v).unwrap();
                    model.insert(key(k), v);
                }
                Op::Delete(k) => {
                    prop_assert_eq!(db.delete(&key(k)).unwrap(), model.remove(&key(k)).is_some());
                }
                Op::Batch(items) => {
                    let batch: Vec<_> = items.iter().map(|(k, v)| (key(*k), v.clone())).collect();
                    db.write(batch.iter().cloned().collect()).unwrap();
                    for (k, v) in batch {
                        match v {
                            Some(v) => { model.insert(k, v); }
                            None => { model.remove(&k); }
                        }
                    }
                }
                Op::Get(k) => prop_assert_eq!(db.get(&key(k)).unwrap(), model.get(&key(k)).cloned()),
                Op::Compact => {
                    let frozen_before = db.segments().len() - 1;
                    let r = db.compact().unwrap();
                    prop_assert_eq!(r.inputs.len(), frozen_before);
                    prop_assert!(db.segments().len() - 1 <= frozen_before.max(1));
                }
                Op::Reopen => {
                    db.close().unwrap();
                    db = LsmHash::open("/db", opts.clone()).unwrap();
                }
            }
        }
        let sorted: BTreeMap<_, _> = model.clone().into_iter().collect();
        let all: Vec<(Vec<u8>, Vec<u8>)> = db.iter().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(all, sorted.clone().into_iter().collect::<Vec<_>>());
        db.close().unwrap();
        let db = LsmHash::open("/db", opts).unwrap();
        let all: BTreeMap<Vec<u8>, Vec<u8>> = db.iter().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(all, sorted);
    }
}
