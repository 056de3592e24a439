//! The WAL's crash-torture workload, for `durable_fs::sim::harness` (used by the tests and
//! by `durable torture`).
//!
//! Per seed: tiny segments (4 KiB, so rotation happens every few records), `Always` or `Never`
//! sync (with explicit `sync` calls), single appends and batches, `truncate_before`,
//! `truncate_after`, and close/reopen cycles (so crashes also land inside recovery). The oracle
//! checks that every acknowledged record is there with its payload, that the log is a prefix
//! of what was issued (no hole, no reordering, no partial batch), that records dropped by an
//! acknowledged `truncate_after` stay dropped, and that acknowledged LSNs never repeat.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use durable_fs::DurableFs;
use durable_fs::sim::Rng;
use durable_fs::sim::harness::{BoxError, Verdict, Workload};

use crate::{Lsn, Options, SyncPolicy, Wal};

/// What the workload records as it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalEvent {
    /// Record `lsn` with `payload` is acknowledged durable.
    Acked {
        /// Its LSN.
        lsn: Lsn,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// `truncate_before(lsn)` was called: records below `lsn` may be gone from now on.
    TruncateBeforeIssued(Lsn),
    /// `truncate_after(lsn)` was called (it may be in flight at the crash).
    TruncateAfterIssued(Lsn),
    /// `truncate_after(lsn)` returned.
    TruncatedAfter(Lsn),
}

/// The workload: `steps` operations per seed in directory `dir`.
#[derive(Clone, Debug)]
pub struct WalWorkload {
    /// Operations per seed.
    pub steps: u32,
    /// Log directory on the simulated disk.
    pub dir: PathBuf,
}

impl Default for WalWorkload {
    fn default() -> Self {
        WalWorkload {
            steps: 40,
            dir: durable_fs::sim::sim_dir("wal"),
        }
    }
}

fn options(fs: &DurableFs, sync: SyncPolicy) -> Options {
    Options::default()
        .with_fs(fs.clone())
        .with_max_segment_bytes(4096)
        .with_write_buffer_bytes(4096)
        .with_preallocate_bytes(1024)
        .with_sync(sync)
}

/// Payload: `i<issue>|b<batch>|n<batch size>|` then padding.
fn payload(issue: u64, batch: u64, n: usize, pad: usize) -> Vec<u8> {
    let mut p = format!("i{issue}|b{batch}|n{n}|").into_bytes();
    p.extend(std::iter::repeat_n(b'.', pad));
    p
}

/// (issue, batch, batch size) parsed from a payload.
fn parse(p: &[u8]) -> Option<(u64, u64, usize)> {
    let s = std::str::from_utf8(p).ok()?;
    let mut it = s.split('|');
    let issue = it.next()?.strip_prefix('i')?.parse().ok()?;
    let batch = it.next()?.strip_prefix('b')?.parse().ok()?;
    let n = it.next()?.strip_prefix('n')?.parse().ok()?;
    Some((issue, batch, n))
}

impl Workload for WalWorkload {
    type Ack = WalEvent;
    type State = Vec<(Lsn, Vec<u8>)>;

    fn name(&self) -> String {
        "wal".to_owned()
    }

    fn prepare(&self, fs: &DurableFs) -> Result<(), BoxError> {
        fs.create_dir_all(&self.dir)?;
        Ok(())
    }

    fn run(&self, fs: &DurableFs, seed: u64, ev: &mut Vec<WalEvent>) -> Result<(), BoxError> {
        let mut rng = Rng::new(seed);
        let sync = if rng.chance(1, 2) {
            SyncPolicy::Always
        } else {
            SyncPolicy::Never
        };
        let mut wal = Wal::open(&self.dir, options(fs, sync))?;
        let mut issue = 0u64;
        let mut batch = 0u64;
        // Appended but not yet acknowledged (Never policy).
        let mut pending: Vec<(Lsn, Vec<u8>)> = Vec::new();
        let ack_pending = |pending: &mut Vec<(Lsn, Vec<u8>)>, ev: &mut Vec<WalEvent>| {
            for (lsn, payload) in pending.drain(..) {
                ev.push(WalEvent::Acked { lsn, payload });
            }
        };
        for _ in 0..self.steps {
            match rng.below(100) {
                0..=69 => {
                    let n = if rng.chance(1, 3) {
                        2 + rng.below_usize(3)
                    } else {
                        1
                    };
                    batch += 1;
                    let payloads: Vec<Vec<u8>> = (0..n)
                        .map(|_| {
                            issue += 1;
                            payload(issue, batch, n, rng.below_usize(300))
                        })
                        .collect();
                    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                    let (first, _) = wal.append_batch(&refs)?;
                    for (i, p) in payloads.into_iter().enumerate() {
                        pending.push((first + i as u64, p));
                    }
                    if sync == SyncPolicy::Always {
                        ack_pending(&mut pending, ev);
                    }
                }
                70..=79 => {
                    wal.sync()?;
                    ack_pending(&mut pending, ev);
                }
                80..=86 => {
                    let last = wal.last_lsn();
                    let lsn = last.saturating_sub(rng.below(40));
                    ev.push(WalEvent::TruncateBeforeIssued(lsn));
                    wal.truncate_before(lsn)?;
                }
                87..=93 => {
                    let last = wal.last_lsn();
                    let lsn = last.saturating_sub(1 + rng.below(6));
                    ev.push(WalEvent::TruncateAfterIssued(lsn));
                    wal.truncate_after(lsn)?;
                    pending.retain(|(l, _)| *l <= lsn);
                    ev.push(WalEvent::TruncatedAfter(lsn));
                }
                _ => {
                    wal.close()?;
                    ack_pending(&mut pending, ev);
                    wal = Wal::open(&self.dir, options(fs, sync))?;
                }
            }
        }
        wal.close()?;
        ack_pending(&mut pending, ev);
        Ok(())
    }

    fn recover(&self, fs: &DurableFs) -> Result<Self::State, BoxError> {
        let wal = Wal::open(&self.dir, options(fs, SyncPolicy::Always))?;
        let records = wal.iter_from(0)?.collect::<Result<Vec<_>, _>>()?;
        wal.close()?;
        Ok(records)
    }

    fn check(&self, _seed: u64, events: &[WalEvent], state: &Self::State) -> Verdict {
        let mut v = Verdict::default();
        let mut acked: BTreeMap<Lsn, Vec<u8>> = BTreeMap::new();
        let mut dropped: HashSet<(Lsn, Vec<u8>)> = HashSet::new();
        let mut floor = 0;
        let mut max_acked = 0;
        let mut truncate_issued = false;
        let mut in_flight_truncate: Option<Lsn> = None;
        let mut truncate_points: HashSet<Lsn> = HashSet::new();
        for e in events {
            match e {
                WalEvent::Acked { lsn, payload } => {
                    if *lsn <= max_acked {
                        v.wrong += 1;
                        v.problem(|| format!("LSN {lsn} acknowledged twice (reused)"));
                    }
                    max_acked = max_acked.max(*lsn);
                    acked.insert(*lsn, payload.clone());
                }
                WalEvent::TruncateBeforeIssued(l) => floor = floor.max(*l),
                WalEvent::TruncateAfterIssued(l) => {
                    truncate_issued = true;
                    truncate_points.insert(*l);
                    in_flight_truncate = Some(*l);
                }
                WalEvent::TruncatedAfter(l) => {
                    in_flight_truncate = None;
                    for (lsn, p) in acked.split_off(&(l + 1)) {
                        dropped.insert((lsn, p));
                    }
                }
            }
        }
        let present: HashMap<Lsn, &Vec<u8>> = state.iter().map(|(l, p)| (*l, p)).collect();
        for (lsn, p) in acked.range(floor..) {
            if in_flight_truncate.is_some_and(|t| *lsn > t) {
                continue; // may be dropped by the truncate in flight
            }
            v.acked_checked += 1;
            match present.get(lsn) {
                None => {
                    v.lost += 1;
                    v.problem(|| format!("acknowledged LSN {lsn} is missing"));
                }
                Some(got) if *got != p => {
                    v.wrong += 1;
                    v.problem(|| format!("LSN {lsn} holds another payload"));
                }
                Some(_) => {}
            }
        }
        // batch -> (size, records present, last LSN present)
        let mut batches: HashMap<u64, (usize, usize, Lsn)> = HashMap::new();
        let mut prev: Option<(Lsn, u64)> = None;
        for (lsn, p) in state {
            if dropped.contains(&(*lsn, p.clone())) {
                v.resurrected += 1;
                v.problem(|| format!("LSN {lsn} came back after truncate_after"));
            }
            let Some((issue, batch, n)) = parse(p) else {
                v.wrong += 1;
                v.problem(|| format!("LSN {lsn} holds a payload never written"));
                continue;
            };
            let e = batches.entry(batch).or_insert((n, 0, 0));
            e.1 += 1;
            e.2 = *lsn;
            if let Some((pl, pi)) = prev {
                let hole = *lsn == pl + 1 && issue != pi + 1;
                let gap_without_truncate = *lsn > pl + 1 && !truncate_issued;
                if issue <= pi || *lsn <= pl || hole || gap_without_truncate {
                    v.wrong += 1;
                    v.problem(|| {
                        format!("log is not a prefix: LSN {pl} (issue {pi}) then LSN {lsn} (issue {issue})")
                    });
                }
            }
            prev = Some((*lsn, issue));
        }
        // A batch is whole or absent, except where truncate_after cut it on purpose (the
        // first recovered one may also be cut by truncate_before).
        let first_batch = state.first().and_then(|(_, p)| parse(p)).map(|(_, b, _)| b);
        for (batch, (n, seen, last)) in batches {
            let cut = truncate_points.contains(&last) || Some(batch) == first_batch;
            if seen != n && !cut {
                v.wrong += 1;
                v.problem(|| format!("batch {batch} has {seen} of {n} records"));
            }
        }
        v
    }
}
