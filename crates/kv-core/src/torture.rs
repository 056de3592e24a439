//! The key-value crash-torture workload, for `durable_fs::sim::harness` (used by both
//! engines' tests and by `durable torture`); each engine plugs in its store with an
//! [`Opener`].
//!
//! Per seed: 4 KiB data files (constant rotation, so hint files are written often), a dozen
//! keys (constant overwrites and deletes), `Always` or `Never` sync (with explicit `sync`),
//! batches, merges and close/reopen cycles, with at most 4 open read handles. The oracle
//! checks every key against what was acknowledged: an acknowledged put is there (or a later,
//! unacknowledged write of the same key), an acknowledged delete stays deleted (no
//! resurrection, the classic merge bug), no value appears that was never written, and a batch
//! is visible whole or not at all.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use durable_fs::DurableFs;
use durable_fs::sim::Rng;
use durable_fs::sim::harness::{BoxError, Verdict, Workload};

use crate::{KvStore, SyncPolicy, WriteBatch};

/// What the workload records as it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvEvent {
    /// Write number `idx` (of batch `batch`) was issued: `key` set to `value`, or deleted.
    Issued {
        /// Issue number, from 1.
        idx: u64,
        /// The batch it belongs to.
        batch: u64,
        /// The key.
        key: Vec<u8>,
        /// The value, or `None` for a delete.
        value: Option<Vec<u8>>,
    },
    /// Every write issued up to `idx` is acknowledged durable.
    Acked(u64),
}

/// Opens a store of type `S` in a directory of a (simulated) filesystem with a sync policy:
/// each engine supplies one with its torture options (4 KiB files, so files rotate, hints
/// are written and merges run constantly).
pub type Opener<S> = fn(&DurableFs, &Path, SyncPolicy) -> Result<S, BoxError>;

/// The single-threaded key-value workload over store type `S`: `steps` operations per seed.
pub struct KvWorkload<S> {
    /// The row's name (`bitcask`, `lsm-hash`).
    pub name: String,
    /// Operations per seed.
    pub steps: u32,
    /// Store directory on the simulated disk.
    pub dir: PathBuf,
    /// How the store is opened.
    pub open: Opener<S>,
}

impl<S> std::fmt::Debug for KvWorkload<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvWorkload")
            .field("name", &self.name)
            .field("steps", &self.steps)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl<S: KvStore> KvWorkload<S> {
    /// The workload named `name`, 40 steps per seed, in `sim_dir(name)`.
    pub fn new(name: &str, open: Opener<S>) -> Self {
        KvWorkload {
            name: name.to_owned(),
            steps: 40,
            dir: durable_fs::sim::sim_dir(name),
            open,
        }
    }
}

/// The recovered state: every live pair.
pub type KvState = BTreeMap<Vec<u8>, Vec<u8>>;

/// A batch as the workloads build it: `(key, Some(value))` puts, `(key, None)` deletes.
pub fn batch_of(ops: &[(Vec<u8>, Option<Vec<u8>>)]) -> WriteBatch {
    ops.iter().cloned().collect()
}

/// Runs the seeded key-value workload on store type `S`.
pub fn run_kv<S: KvStore>(
    open: Opener<S>,
    fs: &DurableFs,
    dir: &Path,
    steps: u32,
    seed: u64,
    ev: &mut Vec<KvEvent>,
) -> Result<(), BoxError> {
    let mut rng = Rng::new(seed);
    let sync = if rng.chance(1, 2) {
        SyncPolicy::Always
    } else {
        SyncPolicy::Never
    };
    let mut store = Box::new(open(fs, dir, sync)?);
    let (mut idx, mut batch_no) = (0u64, 0u64);
    for _ in 0..steps {
        match rng.below(100) {
            0..=77 => {
                let n = if rng.below(100) >= 70 {
                    2 + rng.below(3)
                } else {
                    1
                };
                batch_no += 1;
                let mut batch = Vec::new();
                for _ in 0..n {
                    idx += 1;
                    let key = format!("key{}", rng.below(12)).into_bytes();
                    let value = if rng.chance(1, 5) {
                        None
                    } else {
                        let mut v =
                            format!("{}-i{idx}-", String::from_utf8_lossy(&key)).into_bytes();
                        v.extend(std::iter::repeat_n(b'.', rng.below_usize(200)));
                        Some(v)
                    };
                    ev.push(KvEvent::Issued {
                        idx,
                        batch: batch_no,
                        key: key.clone(),
                        value: value.clone(),
                    });
                    batch.push((key, value));
                }
                store.write(batch_of(&batch))?;
                if sync == SyncPolicy::Always {
                    ev.push(KvEvent::Acked(idx));
                }
            }
            78..=85 => {
                store.sync()?;
                ev.push(KvEvent::Acked(idx));
            }
            86..=93 => store.compact()?,
            _ => {
                store.close()?;
                ev.push(KvEvent::Acked(idx));
                store = Box::new(open(fs, dir, sync)?);
            }
        }
    }
    store.close()?;
    ev.push(KvEvent::Acked(idx));
    Ok(())
}

/// Recovers store type `S` and reads every pair.
pub fn recover_kv<S: KvStore>(
    open: Opener<S>,
    fs: &DurableFs,
    dir: &Path,
) -> Result<KvState, BoxError> {
    let store = Box::new(open(fs, dir, SyncPolicy::Always)?);
    let state = store.pairs()?.into_iter().collect();
    store.close()?;
    Ok(state)
}

/// A key and the value written to it (`None`: deleted).
type IssuedWrite<'a> = (&'a [u8], &'a Option<Vec<u8>>);

/// The key-value oracle; see the module docs.
pub fn check_kv(events: &[KvEvent], state: &KvState) -> Verdict {
    let mut v = Verdict::default();
    let acked = events
        .iter()
        .filter_map(|e| match e {
            KvEvent::Acked(i) => Some(*i),
            KvEvent::Issued { .. } => None,
        })
        .max()
        .unwrap_or(0);
    // Per key: the acknowledged final write, and the unacknowledged ones after it.
    let mut last_acked: HashMap<&[u8], &Option<Vec<u8>>> = HashMap::new();
    let mut later: HashMap<&[u8], Vec<&Option<Vec<u8>>>> = HashMap::new();
    let mut written: HashMap<&[u8], Vec<&Vec<u8>>> = HashMap::new();
    let mut batches: BTreeMap<u64, Vec<IssuedWrite<'_>>> = BTreeMap::new();
    for e in events {
        if let KvEvent::Issued {
            idx,
            batch,
            key,
            value,
        } = e
        {
            if let Some(val) = value {
                written.entry(key).or_default().push(val);
            }
            if *idx <= acked {
                last_acked.insert(key, value);
            } else {
                later.entry(key).or_default().push(value);
                batches.entry(*batch).or_default().push((key, value));
            }
        }
    }
    for (key, want) in &last_acked {
        v.acked_checked += 1;
        let got = state.get(*key);
        let allowed_later = later
            .get(key)
            .is_some_and(|l| l.iter().any(|w| w.as_ref() == got));
        if got == want.as_ref() || allowed_later {
            continue;
        }
        let key_s = String::from_utf8_lossy(key);
        match (want, got) {
            (Some(_), None) => {
                v.lost += 1;
                v.problem(|| format!("acknowledged put of {key_s} is gone"));
            }
            (None, Some(old)) if written.get(key).is_some_and(|w| w.contains(&old)) => {
                v.resurrected += 1;
                v.problem(|| format!("acknowledged delete of {key_s} undone"));
            }
            _ => {
                v.wrong += 1;
                v.problem(|| {
                    format!(
                        "{key_s} holds {:?}",
                        got.map(|g| String::from_utf8_lossy(g).into_owned())
                    )
                });
            }
        }
    }
    for (key, got) in state {
        let ever = written
            .get(key.as_slice())
            .is_some_and(|w| w.contains(&got));
        if !ever {
            v.wrong += 1;
            v.problem(|| {
                format!(
                    "{} holds a value never written",
                    String::from_utf8_lossy(key)
                )
            });
        }
    }
    // An unacknowledged batch is visible whole or not at all (unless a later write to the
    // same key superseded part of it).
    for (b, ops) in &batches {
        let visible = |(k, val): &(&[u8], &Option<Vec<u8>>)| state.get(*k) == val.as_ref();
        let any_put_visible = ops.iter().any(|op| op.1.is_some() && visible(op));
        if any_put_visible && !ops.iter().all(visible) {
            let superseded = ops.iter().filter(|op| !visible(op)).all(|(k, val)| {
                later.get(k).is_some_and(|l| {
                    let pos = l.iter().position(|w| std::ptr::eq(*w, *val)).unwrap_or(0);
                    l.iter().skip(pos + 1).any(|w| w.as_ref() == state.get(*k))
                })
            });
            if !superseded {
                v.wrong += 1;
                v.problem(|| format!("batch {b} is partly visible"));
            }
        }
    }
    v
}

impl<S: KvStore> Workload for KvWorkload<S> {
    type Ack = KvEvent;
    type State = KvState;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn prepare(&self, fs: &DurableFs) -> Result<(), BoxError> {
        fs.create_dir_all(&self.dir)?;
        Ok(())
    }

    fn run(&self, fs: &DurableFs, seed: u64, ev: &mut Vec<KvEvent>) -> Result<(), BoxError> {
        run_kv(self.open, fs, &self.dir, self.steps, seed, ev)
    }

    fn recover(&self, fs: &DurableFs) -> Result<KvState, BoxError> {
        recover_kv(self.open, fs, &self.dir)
    }

    fn check(&self, _seed: u64, events: &[KvEvent], state: &KvState) -> Verdict {
        check_kv(events, state)
    }
}
