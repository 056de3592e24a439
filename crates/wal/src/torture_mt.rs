//! The WAL's concurrent crash torture, for `durable_fs::sim::concurrent` (used by the tests
//! and by `durable torture`).
//!
//! Per seed: three appender threads (single records and batches, every payload unique) and
//! a fourth thread that checkpoints with `truncate_before` and now and then drops a suffix
//! with `truncate_after`, all at once on one simulated disk with 4 KiB segments. `Always` or
//! `Never` sync (the appenders then call `sync` now and then) is drawn from the seed.
//!
//! Stamps order calls in real time only when they differ (the journal length never goes
//! down): an append buffered in memory changes nothing on disk, so a `sync` stamped with the
//! same position may have started before it. The oracle therefore counts a `sync` as
//! covering an append only when its start stamp is greater than the append's end stamp.
//!
//! The oracle ([`check_concurrent`]), at a crash after journal change `k`: every record in
//! the recovered log was issued before `k`, under the LSN its append returned, in increasing
//! LSN order; every acknowledged append (returned before `k` under `Always`, or covered by a
//! `sync` that started after it returned and ended before `k`) is there, unless a truncation
//! that started before `k` covered it; no record that a finished `truncate_after` dropped
//! (appended before the truncation started) comes back. (That an append dropped by a
//! concurrent `truncate_after` fails with `Error::Truncated` instead of returning its LSN is
//! checked by `tests/concurrency.rs`: stamps cannot tell whether such an append finished its
//! wait before the truncation took the log lock.)

use std::collections::HashMap;
use std::path::PathBuf;

use durable_fs::DurableFs;
use durable_fs::sim::concurrent::ConcurrentWorkload;
use durable_fs::sim::harness::{BoxError, Verdict};
use durable_fs::sim::{Rng, SimFs};
use parking_lot::Mutex;

use crate::{Lsn, Options, SyncPolicy, Wal};

/// One stamped call of a concurrent run; stamps are [`SimFs::journal_len`] before the call
/// and after it returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalCall {
    /// The log was opened with this policy (first in every history).
    Opened {
        /// `SyncPolicy::Always`.
        always: bool,
    },
    /// `append_batch(payloads)`; `lsns` is what it returned, `None` if it failed.
    Append {
        /// The payloads.
        payloads: Vec<Vec<u8>>,
        /// First and last LSN returned.
        lsns: Option<(Lsn, Lsn)>,
        /// Stamp before.
        start: u64,
        /// Stamp after.
        end: u64,
    },
    /// `sync`, `Ok` or not.
    Sync {
        /// Stamp before.
        start: u64,
        /// Stamp after, if it returned `Ok`.
        end: Option<u64>,
    },
    /// `truncate_before(lsn)` (`after == false`) or `truncate_after(lsn)`.
    Truncate {
        /// Which one.
        after: bool,
        /// Its argument.
        lsn: Lsn,
        /// Stamp before.
        start: u64,
        /// Stamp after, if it returned `Ok`.
        end: Option<u64>,
    },
}

/// The concurrent WAL workload.
#[derive(Clone, Debug)]
pub struct ConcurrentWal {
    /// Log directory on the simulated disk.
    pub dir: PathBuf,
    /// Appends per appender thread.
    pub steps: u32,
}

impl Default for ConcurrentWal {
    fn default() -> Self {
        ConcurrentWal {
            dir: durable_fs::sim::sim_dir("wal-mt"),
            steps: 24,
        }
    }
}

fn options(fs: &DurableFs, sync: SyncPolicy) -> Options {
    Options::default()
        .with_fs(fs.clone())
        .with_max_segment_bytes(4096)
        .with_write_buffer_bytes(4096)
        .with_sync(sync)
}

fn appender(
    wal: &Wal,
    sim: &SimFs,
    calls: &Mutex<Vec<WalCall>>,
    t: u64,
    seed: u64,
    steps: u32,
    always: bool,
) {
    let mut rng = Rng::new(Rng::derive(seed, 100 + t));
    for i in 0..steps {
        if !always && rng.chance(1, 6) {
            let start = sim.journal_len();
            let end = wal.sync().is_ok().then(|| sim.journal_len());
            calls.lock().push(WalCall::Sync { start, end });
            if end.is_none() {
                return;
            }
        }
        let n = if rng.chance(1, 4) {
            2 + rng.below_usize(2)
        } else {
            1
        };
        let payloads: Vec<Vec<u8>> = (0..n)
            .map(|j| {
                let mut p = format!("t{t}-i{i}-j{j}-").into_bytes();
                p.extend(std::iter::repeat_n(b'.', rng.below_usize(200)));
                p
            })
            .collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let start = sim.journal_len();
        let r = wal.append_batch(&refs);
        let end = sim.journal_len();
        let failed = match &r {
            Err(crate::Error::Truncated { .. }) => false, // dropped on purpose: go on
            Err(_) => true,
            Ok(_) => false,
        };
        calls.lock().push(WalCall::Append {
            payloads,
            lsns: r.ok(),
            start,
            end,
        });
        if failed {
            return;
        }
    }
}

fn truncator(
    wal: &Wal,
    sim: &SimFs,
    calls: &Mutex<Vec<WalCall>>,
    seed: u64,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut rng = Rng::new(Rng::derive(seed, 300));
    for _ in 0..8 {
        if stop.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_micros(300));
        let last = wal.last_lsn();
        let after = rng.chance(1, 4);
        let lsn = if after {
            last.saturating_sub(rng.below(3))
        } else {
            rng.below(last + 1)
        };
        let start = sim.journal_len();
        let r = if after {
            wal.truncate_after(lsn)
        } else {
            wal.truncate_before(lsn).map(drop)
        };
        let end = r.is_ok().then(|| sim.journal_len());
        calls.lock().push(WalCall::Truncate {
            after,
            lsn,
            start,
            end,
        });
        if end.is_none() {
            return;
        }
    }
}

impl ConcurrentWorkload for ConcurrentWal {
    type Event = WalCall;
    type State = Vec<(Lsn, Vec<u8>)>;

    fn name(&self) -> String {
        "wal-mt".to_owned()
    }

    fn prepare(&self, fs: &DurableFs) -> Result<(), BoxError> {
        fs.create_dir_all(&self.dir)?;
        Ok(())
    }

    fn run(&self, sim: &SimFs, seed: u64) -> Result<Vec<WalCall>, BoxError> {
        let always = Rng::new(seed).chance(1, 2);
        let sync = if always {
            SyncPolicy::Always
        } else {
            SyncPolicy::Never
        };
        let Ok(wal) = Wal::open(&self.dir, options(&sim.durable(), sync)) else {
            return Ok(vec![WalCall::Opened { always }]);
        };
        let calls = Mutex::new(vec![WalCall::Opened { always }]);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|t| {
                    let (wal, calls) = (&wal, &calls);
                    s.spawn(move || appender(wal, sim, calls, t, seed, self.steps, always))
                })
                .collect();
            s.spawn(|| truncator(&wal, sim, &calls, seed, &stop));
            for h in hs {
                let _ = h.join();
            }
            stop.store(true, std::sync::atomic::Ordering::Release);
        });
        let start = sim.journal_len();
        let end = wal.close().is_ok().then(|| sim.journal_len());
        calls.lock().push(WalCall::Sync { start, end });
        Ok(calls.into_inner())
    }

    fn recover(&self, fs: &DurableFs) -> Result<Self::State, BoxError> {
        let wal = Wal::open(&self.dir, options(fs, SyncPolicy::Always))?;
        let records = wal.iter_from(0)?.collect::<Result<Vec<_>, _>>()?;
        wal.close()?;
        Ok(records)
    }

    fn check(&self, history: &[WalCall], k: u64, state: &Self::State) -> Verdict {
        check_concurrent(history, k, state)
    }
}

/// The concurrent WAL oracle; see the [module docs](self).
pub fn check_concurrent(history: &[WalCall], k: u64, state: &[(Lsn, Vec<u8>)]) -> Verdict {
    let mut v = Verdict::default();
    let always = history
        .iter()
        .any(|c| matches!(c, WalCall::Opened { always: true }));
    let syncs: Vec<(u64, u64)> = history
        .iter()
        .filter_map(|c| match c {
            WalCall::Sync {
                start,
                end: Some(e),
            } => Some((*start, *e)),
            _ => None,
        })
        .collect();
    // payload -> (its LSN if the append returned, start, end)
    let mut issued: HashMap<&[u8], (Option<Lsn>, u64, u64)> = HashMap::new();
    for c in history {
        if let WalCall::Append {
            payloads,
            lsns,
            start,
            end,
        } = c
        {
            for (i, p) in payloads.iter().enumerate() {
                let lsn = lsns.map(|(first, _)| first + i as u64);
                issued.insert(p.as_slice(), (lsn, *start, *end));
            }
        }
    }
    let truncations: Vec<(bool, Lsn, u64, Option<u64>)> = history
        .iter()
        .filter_map(|c| match c {
            WalCall::Truncate {
                after,
                lsn,
                start,
                end,
            } => Some((*after, *lsn, *start, *end)),
            _ => None,
        })
        .collect();
    let mut present: HashMap<&[u8], Lsn> = HashMap::new();
    let mut prev = 0;
    for (lsn, payload) in state {
        if *lsn <= prev {
            v.wrong += 1;
            v.problem(|| format!("crash point {k}: LSN {lsn} after {prev}"));
        }
        prev = *lsn;
        match issued.get(payload.as_slice()) {
            Some((ret, start, end)) if *start < k => {
                if ret.is_some_and(|r| r != *lsn) {
                    v.wrong += 1;
                    v.problem(|| format!("crash point {k}: record {lsn} was returned as {ret:?}"));
                }
                // Dropped by a finished truncate_after that started after it returned.
                if truncations.iter().any(|&(after, t, ts, te)| {
                    after && *lsn > t && *end < ts && te.is_some_and(|te| te <= k)
                }) {
                    v.resurrected += 1;
                    v.problem(|| {
                        format!("crash point {k}: record {lsn} dropped by truncate_after is back")
                    });
                }
            }
            _ => {
                v.wrong += 1;
                v.problem(|| format!("crash point {k}: record {lsn} holds a payload not issued"));
            }
        }
        present.insert(payload.as_slice(), *lsn);
    }
    for (payload, (ret, start, end)) in &issued {
        let Some(lsn) = ret else { continue };
        let ack = if always {
            *end
        } else {
            syncs
                .iter()
                .filter(|(s, _)| s > end)
                .map(|(_, e)| *e)
                .min()
                .unwrap_or(u64::MAX)
        };
        if ack == u64::MAX || ack > k {
            continue;
        }
        // A truncation that started before the cut may have removed it on purpose.
        // (Not one that ended before this append started: it could not drop a fresh LSN.)
        let truncated = truncations.iter().any(|&(after, t, ts, te)| {
            ts < k && *start <= te.unwrap_or(u64::MAX) && if after { *lsn > t } else { *lsn < t }
        });
        if truncated {
            continue;
        }
        v.acked_checked += 1;
        if !present.contains_key(payload) {
            v.lost += 1;
            v.problem(|| {
                format!(
                    "crash point {k}: acknowledged record {lsn} ({}) lost (appended {start}..{end})",
                    String::from_utf8_lossy(payload).chars().take(16).collect::<String>()
                )
            });
        }
    }
    v
}
