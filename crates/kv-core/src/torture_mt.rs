//! The concurrent key-value crash torture, for `durable_fs::sim::concurrent` (used by the
//! tests and by `durable torture`; any engine, through [`KvStore`] and an [`Opener`]).
//!
//! Per seed: three writer threads put, delete and write batches over eight shared keys
//! (every value names its writer and is unique), a reader thread reads them, and a fourth
//! thread merges (or compacts) again and again, all at once on one simulated disk with 4 KiB
//! files, so rotations, merges and group commits interleave with the writes. `Always` or
//! `Never` sync (the writers then call `sync` now and then) is drawn from the seed.
//!
//! The oracle ([`check_concurrent`]) judges a crash after journal change `k` from the stamped
//! history. A write is *acknowledged* at `k` when it returned before `k` (under `Always`), or
//! when a `sync` that started after it returned did (under `Never`). A write *definitely
//! precedes* another when all its changes to the disk come before any of the other's (its end
//! stamp is at most the other's start stamp). For each key, the recovered value must come from
//! a write that had started before `k` (or be the initial absence) and that no acknowledged
//! write definitely follows: otherwise an acknowledged put was lost (or an acknowledged delete
//! undone). Under `Always`, a read that returned before `k` saw a value that must survive the
//! crash the same way (visibility is durability); a read of a value the crash took back is a
//! *phantom read*.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use durable_fs::DurableFs;
use durable_fs::sim::concurrent::ConcurrentWorkload;
use durable_fs::sim::harness::{BoxError, Verdict};
use durable_fs::sim::{Rng, SimFs};

use crate::torture::{KvState, Opener, batch_of, recover_kv};
use crate::{KvStore, SyncPolicy};

/// One stamped call of a concurrent run. Stamps are [`SimFs::journal_len`] before the call
/// and after it returned (`None`: it failed).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvCall {
    /// The store was opened with this policy (first in every history).
    Opened {
        /// `SyncPolicy::Always`.
        always: bool,
    },
    /// A batch of puts (`Some`) and deletes (`None`).
    Write {
        /// The operations.
        ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        /// Stamp before.
        start: u64,
        /// Stamp after, if it returned `Ok`.
        end: Option<u64>,
    },
    /// `sync` (or the final `close`): makes every write that returned before it durable.
    Sync {
        /// Stamp before.
        start: u64,
        /// Stamp after, if it returned `Ok`.
        end: Option<u64>,
    },
    /// A `get` that returned `value`.
    Read {
        /// The key.
        key: Vec<u8>,
        /// What it returned.
        value: Option<Vec<u8>>,
        /// Stamp before.
        start: u64,
        /// Stamp after.
        end: u64,
    },
}

/// The concurrent workload over store type `S`.
pub struct ConcurrentKv<S> {
    /// The row's name (`bitcask-mt`, ...).
    pub name: String,
    /// Store directory on the simulated disk.
    pub dir: PathBuf,
    /// Operations per writer thread.
    pub steps: u32,
    /// How the store is opened.
    pub open: Opener<S>,
    /// Only this policy (`None`: drawn from the seed).
    pub sync: Option<SyncPolicy>,
}

impl<S> std::fmt::Debug for ConcurrentKv<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrentKv")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("steps", &self.steps)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

impl<S: KvStore> ConcurrentKv<S> {
    /// The workload named `name` (in `sim_dir(name)`), opening its store with `open` (a
    /// plain function, so tests can open one with options of their own, such as a regression
    /// put back).
    pub fn new(name: &str, open: Opener<S>) -> Self {
        ConcurrentKv {
            name: name.to_owned(),
            dir: durable_fs::sim::sim_dir(name),
            steps: 24,
            open,
            sync: None,
        }
    }
}

const WRITERS: u64 = 3;
const KEYS: u64 = 8;
/// Merges (or compactions) per run, at most.
const MAX_MERGES: u32 = 12;
/// Reads per run, at most.
const MAX_READS: u32 = 400;

/// Stamps, runs and records one call.
struct Recorder<'a> {
    sim: &'a SimFs,
    calls: parking_lot::Mutex<Vec<KvCall>>,
}

impl Recorder<'_> {
    fn now(&self) -> u64 {
        self.sim.journal_len()
    }

    fn push(&self, c: KvCall) {
        self.calls.lock().push(c);
    }
}

fn writer<S: KvStore>(db: &S, rec: &Recorder<'_>, t: u64, seed: u64, steps: u32, always: bool) {
    let mut rng = Rng::new(Rng::derive(seed, 100 + t));
    for i in 0..steps {
        let roll = rng.below(100);
        if !always && roll >= 85 {
            let start = rec.now();
            let r = db.sync();
            let end = r.is_ok().then(|| rec.now());
            rec.push(KvCall::Sync { start, end });
            if end.is_none() {
                return;
            }
            continue;
        }
        let n = if roll < 20 { 2 + rng.below(2) } else { 1 };
        let ops: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..n)
            .map(|j| {
                let key = format!("key{}", rng.below(KEYS)).into_bytes();
                let value = (!rng.chance(1, 5)).then(|| {
                    let mut v = format!("t{t}-i{i}-j{j}-").into_bytes();
                    v.extend(std::iter::repeat_n(b'.', rng.below_usize(300)));
                    v
                });
                (key, value)
            })
            .collect();
        let start = rec.now();
        let r = db.write(batch_of(&ops));
        let end = r.is_ok().then(|| rec.now());
        rec.push(KvCall::Write { ops, start, end });
        if end.is_none() {
            return; // poisoned (an injected EIO): every later call fails the same way
        }
    }
}

fn reader<S: KvStore>(db: &S, rec: &Recorder<'_>, seed: u64, stop: &AtomicBool) {
    let mut rng = Rng::new(Rng::derive(seed, 200));
    for _ in 0..MAX_READS {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let key = format!("key{}", rng.below(KEYS)).into_bytes();
        let start = rec.now();
        let Ok(value) = db.get(&key) else {
            return;
        };
        let end = rec.now();
        rec.push(KvCall::Read {
            key,
            value,
            start,
            end,
        });
        std::thread::yield_now();
    }
}

impl<S: KvStore> ConcurrentWorkload for ConcurrentKv<S> {
    type Event = KvCall;
    type State = KvState;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn prepare(&self, fs: &DurableFs) -> Result<(), BoxError> {
        fs.create_dir_all(&self.dir)?;
        Ok(())
    }

    fn run(&self, sim: &SimFs, seed: u64) -> Result<Vec<KvCall>, BoxError> {
        let mut rng = Rng::new(seed);
        let sync = self.sync.unwrap_or(if rng.chance(1, 2) {
            SyncPolicy::Always
        } else {
            SyncPolicy::Never
        });
        let always = sync == SyncPolicy::Always;
        let Ok(db) = (self.open)(&sim.durable(), &self.dir, sync) else {
            // An injected EIO can hit open itself: then nothing was acknowledged.
            return Ok(vec![KvCall::Opened { always }]);
        };
        let rec = Recorder {
            sim,
            calls: parking_lot::Mutex::new(vec![KvCall::Opened { always }]),
        };
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|t| {
                    let (db, rec) = (&db, &rec);
                    s.spawn(move || writer(db, rec, t, seed, self.steps, always))
                })
                .collect();
            s.spawn(|| reader(&db, &rec, seed, &stop));
            s.spawn(|| {
                // Bounded, so a run stays short however the threads are scheduled.
                for _ in 0..MAX_MERGES {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    // A failed merge (EIO) leaves the old files; the next one reports poison.
                    let _ = db.compact();
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            });
            for h in writers {
                let _ = h.join();
            }
            stop.store(true, Ordering::Release);
        });
        let start = rec.now();
        let closed = Box::new(db).close();
        let end = closed.is_ok().then(|| rec.now());
        rec.push(KvCall::Sync { start, end });
        Ok(rec.calls.into_inner())
    }

    fn recover(&self, fs: &DurableFs) -> Result<KvState, BoxError> {
        recover_kv(self.open, fs, &self.dir)
    }

    fn check(&self, history: &[KvCall], crash_point: u64, state: &KvState) -> Verdict {
        check_concurrent(history, crash_point, state)
    }
}

/// The writes a recovered value can come from (see `check_concurrent`).
type Sources<'f, 'a> = &'f dyn Fn(&[u8], Option<&Vec<u8>>) -> Option<Vec<Op<'a>>>;

/// One write to one key, as the oracle sees it.
#[derive(Clone, Copy, Debug)]
struct Op<'a> {
    value: Option<&'a Vec<u8>>,
    start: u64,
    /// `u64::MAX` when the call failed: it never definitely precedes anything.
    end: u64,
    /// When it became acknowledged (`u64::MAX`: never).
    ack: u64,
}

/// The concurrent oracle; see the [module docs](self).
pub fn check_concurrent(history: &[KvCall], k: u64, state: &KvState) -> Verdict {
    let mut v = Verdict::default();
    let always = history
        .iter()
        .any(|c| matches!(c, KvCall::Opened { always: true }));
    let mut sync_ends: Vec<(u64, u64)> = history
        .iter()
        .filter_map(|c| match c {
            KvCall::Sync {
                start,
                end: Some(end),
            } => Some((*start, *end)),
            _ => None,
        })
        .collect();
    sync_ends.sort_unstable();
    // The earliest end of a sync that started after `e` (stamps order calls in real time
    // only when they differ: a sync stamped `e` may have started before the write ended).
    let acked_by_sync = |e: u64| {
        sync_ends
            .iter()
            .filter(|(s, _)| *s > e)
            .map(|(_, end)| *end)
            .min()
            .unwrap_or(u64::MAX)
    };
    let mut ops: HashMap<&[u8], Vec<Op<'_>>> = HashMap::new();
    for c in history {
        if let KvCall::Write {
            ops: batch,
            start,
            end,
        } = c
        {
            let ack = match end {
                None => u64::MAX,
                Some(e) if always => *e,
                Some(e) => acked_by_sync(*e),
            };
            for (key, value) in batch {
                ops.entry(key.as_slice()).or_default().push(Op {
                    value: value.as_ref(),
                    start: *start,
                    end: end.unwrap_or(u64::MAX),
                    ack,
                });
            }
        }
    }
    // The writes the recovered value of `key` can come from (the initial absence has end 0);
    // `None` when the value was never written by a write started before `k`.
    let sources = |key: &[u8], got: Option<&Vec<u8>>| -> Option<Vec<Op<'_>>> {
        let mut m: Vec<Op<'_>> = ops
            .get(key)
            .map(|list| {
                list.iter()
                    .filter(|o| o.start < k && o.value == got)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        if got.is_none() {
            m.push(Op {
                value: None,
                start: 0,
                end: 0,
                ack: 0,
            });
        }
        (!m.is_empty()).then_some(m)
    };
    let mut keys: BTreeSet<&[u8]> = ops.keys().copied().collect();
    keys.extend(state.keys().map(Vec::as_slice));
    for key in keys {
        let got = state.get(key);
        let key_s = String::from_utf8_lossy(key);
        let Some(from) = sources(key, got) else {
            v.wrong += 1;
            v.problem(|| format!("crash point {k}: {key_s} holds a value no write had issued"));
            continue;
        };
        let acked: Vec<Op<'_>> = ops
            .get(key)
            .map(|l| {
                l.iter()
                    .filter(|o| o.ack < u64::MAX && o.ack <= k)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        if acked.is_empty() {
            continue;
        }
        v.acked_checked += 1;
        // A source is possible unless an acknowledged write definitely follows it.
        let overtaken = |m: &Op<'_>| acked.iter().any(|a| m.end <= a.start && m.end < u64::MAX);
        if from.iter().all(overtaken) {
            let lost = acked.iter().find(|a| from.iter().any(|m| m.end <= a.start));
            match lost.map(|a| a.value) {
                Some(None) => {
                    v.resurrected += 1;
                    v.problem(|| format!("crash point {k}: acknowledged delete of {key_s} undone"));
                }
                _ => {
                    v.lost += 1;
                    v.problem(|| {
                        format!(
                            "crash point {k}: acknowledged write of {key_s} lost (holds {:?})",
                            got.map(|g| String::from_utf8_lossy(g).into_owned())
                        )
                    });
                }
            }
        }
    }
    if always {
        check_reads(history, k, state, &ops, &sources, &mut v);
    }
    v
}

/// Under `Always`: every value a read returned before `k` survives the crash (or a write
/// not definitely before it replaced it).
fn check_reads<'a>(
    history: &'a [KvCall],
    k: u64,
    state: &KvState,
    ops: &HashMap<&[u8], Vec<Op<'a>>>,
    sources: Sources<'_, 'a>,
    v: &mut Verdict,
) {
    for c in history {
        let KvCall::Read {
            key,
            value: Some(seen),
            end,
            ..
        } = c
        else {
            continue;
        };
        if *end > k {
            continue;
        }
        let key_s = String::from_utf8_lossy(key);
        let Some(w) = ops
            .get(key.as_slice())
            .and_then(|l| l.iter().find(|o| o.value == Some(seen)))
        else {
            v.wrong += 1;
            v.problem(|| format!("a read of {key_s} returned a value never written"));
            continue;
        };
        let Some(from) = sources(key, state.get(key.as_slice())) else {
            continue; // counted as wrong above
        };
        if from.iter().all(|m| m.end <= w.start && m.end < u64::MAX) {
            v.phantom_reads += 1;
            v.problem(|| {
                format!(
                    "crash point {k}: a read of {key_s} returned a value the crash took back \
                     (visible before it was durable)"
                )
            });
        }
    }
}
