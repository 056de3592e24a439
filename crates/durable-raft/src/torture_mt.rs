//! The Raft log's concurrent crash torture (`durable torture --engine raft-log-mt`), for
//! `durable_fs::sim::concurrent`: the log as openraft runs it, with the flusher thread.
//!
//! Per seed, on one simulated disk: a driver thread plays openraft's core (appends, often
//! several before the first callback comes back, so the flusher groups them; votes;
//! truncations of a suffix; purges), the flusher thread syncs and runs the callbacks, and a
//! reader thread reads windows of the log meanwhile. Every call is stamped with the
//! journal position before it and after it returned, every callback with the position when
//! it ran (after its fsync). Run a second time with EIO at a seeded fsync.
//!
//! The oracle, at a crash after journal change `k`: an entry whose callback said durable
//! at or before `k` is there unless a truncate or purge issued after it had started by
//! `k`; no entry a truncate that returned by `k` removed comes back; the log has no hole and
//! starts right after the last purged index; each entry was appended there (index, term)
//! before `k`; the vote and the last purged id are at least what returned by `k`, and no more
//! than what started before `k`; no callback says durable after one said failed (fail-stop);
//! every entry the reader saw was one appended at that index.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use durable_fs::DurableFs;
use durable_fs::sim::concurrent::ConcurrentWorkload;
use durable_fs::sim::harness::{BoxError, Verdict};
use durable_fs::sim::{Rng, SimFs};
use parking_lot::Mutex;

use crate::log::{FlushMode, LogCore, LogOptions};
use crate::torture::{LogState, RaftLogWorkload};
use crate::types::{TypeConfig, Vote};

/// One stamped call (or callback) of a concurrent run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogCall {
    /// Entry `issue` is about to be appended at `index` in `term`, after `prev`.
    Issued {
        /// Its unique number.
        issue: u64,
        /// Its index.
        index: u64,
        /// Its term.
        term: u64,
        /// The entry it follows.
        prev: Option<u64>,
        /// Stamp before its append.
        start: u64,
    },
    /// A callback said these entries are durable, at this stamp.
    Acked {
        /// The entries.
        issues: Vec<u64>,
        /// Stamp when it ran.
        at: u64,
    },
    /// A callback said its entries failed, at this stamp.
    AckFailed {
        /// Stamp when it ran.
        at: u64,
    },
    /// `save_vote` (`end` is `None` if it failed).
    Vote {
        /// The vote's term.
        term: u64,
        /// Stamp before.
        start: u64,
        /// Stamp after.
        end: Option<u64>,
    },
    /// `truncate(index)`.
    Truncate {
        /// Its index.
        index: u64,
        /// Stamp before.
        start: u64,
        /// Stamp after.
        end: Option<u64>,
    },
    /// `purge(index)`.
    Purge {
        /// Its index.
        index: u64,
        /// Stamp before.
        start: u64,
        /// Stamp after.
        end: Option<u64>,
    },
    /// The reader saw something that was never appended there.
    BadRead(String),
}

/// The concurrent Raft log workload.
#[derive(Clone, Debug)]
pub struct ConcurrentRaftLog {
    /// Driver operations per seed.
    pub steps: u32,
    /// The single-threaded workload (its directory and recovery are reused).
    pub base: RaftLogWorkload,
}

impl Default for ConcurrentRaftLog {
    fn default() -> Self {
        ConcurrentRaftLog {
            steps: 80,
            base: RaftLogWorkload::default(),
        }
    }
}

fn options(fs: &DurableFs, regressions: crate::log::LogRegressions) -> LogOptions {
    let mut opts = LogOptions::default()
        .with_fs(fs.clone())
        .with_max_segment_bytes(4096)
        .with_wal_buffers(1024, 4096)
        .with_flush(FlushMode::Thread);
    opts.regressions = regressions;
    opts
}

struct Driver<'a> {
    log: &'a LogCore<TypeConfig>,
    sim: &'a SimFs,
    calls: &'a Arc<Mutex<Vec<LogCall>>>,
    /// issue -> (index, term), for the reader.
    issued: &'a Mutex<HashMap<u64, (u64, u64)>>,
}

impl Driver<'_> {
    fn push(&self, c: LogCall) {
        self.calls.lock().push(c);
    }

    fn run(&self, seed: u64, steps: u32) {
        let mut rng = Rng::new(Rng::derive(seed, 0x4AF7));
        let mut live: std::collections::BTreeMap<u64, (u64, u64)> = Default::default();
        let mut purged: Option<(u64, u64)> = None;
        let (mut term, mut issue) = (1u64, 0u64);
        for _ in 0..steps {
            let last = live
                .keys()
                .next_back()
                .copied()
                .or(purged.map(|p| p.0))
                .unwrap_or(0);
            let ok = match rng.below(100) {
                0..=64 => {
                    let n = 1 + rng.below(3);
                    let mut entries = Vec::new();
                    let mut issues = Vec::new();
                    let start = self.sim.journal_len();
                    for k in 0..n {
                        issue += 1;
                        let index = last + 1 + k;
                        let prev = live.get(&(index - 1)).map(|(_, i)| *i);
                        self.issued.lock().insert(issue, (index, term));
                        self.push(LogCall::Issued {
                            issue,
                            index,
                            term,
                            prev,
                            start,
                        });
                        live.insert(index, (term, issue));
                        entries.push(crate::torture::entry_of(
                            issue,
                            index,
                            term,
                            rng.below_usize(200),
                        ));
                        issues.push(issue);
                    }
                    let (calls, sim) = (Arc::clone(self.calls), self.sim.clone());
                    let (tx, rx) = std::sync::mpsc::channel();
                    let r = self.log.append(
                        entries,
                        Box::new(move |r| {
                            let at = sim.journal_len();
                            calls.lock().push(match r {
                                Ok(()) => LogCall::Acked { issues, at },
                                Err(_) => LogCall::AckFailed { at },
                            });
                            let _ = tx.send(());
                        }),
                    );
                    // openraft 0.9 waits for each callback; wait sometimes, so that the
                    // flusher also sees several appends queued at once.
                    if r.is_ok() && rng.chance(1, 3) {
                        let _ = rx.recv();
                    }
                    r.is_ok()
                }
                65..=72 => {
                    if rng.chance(1, 2) {
                        term += 1;
                    }
                    let start = self.sim.journal_len();
                    let r = self.log.save_vote(&Vote::new(term, 1));
                    let end = r.is_ok().then(|| self.sim.journal_len());
                    self.push(LogCall::Vote { term, start, end });
                    r.is_ok()
                }
                73..=84 => {
                    let floor = purged.map_or(1, |p| p.0 + 1);
                    let at = last.saturating_sub(rng.below(4)).max(floor);
                    if at > last {
                        continue;
                    }
                    let start = self.sim.journal_len();
                    let r = self.log.truncate(at);
                    let end = r.is_ok().then(|| self.sim.journal_len());
                    self.push(LogCall::Truncate {
                        index: at,
                        start,
                        end,
                    });
                    live.retain(|&i, _| i < at);
                    term += 1;
                    r.is_ok()
                }
                _ => {
                    let (index, t) = if rng.chance(1, 5) {
                        (last + 1 + rng.below(3), term)
                    } else {
                        let Some((&i, &(t, _))) =
                            live.iter().nth(rng.below_usize(live.len().max(1)))
                        else {
                            continue;
                        };
                        (i, t)
                    };
                    let start = self.sim.journal_len();
                    let r = self.log.purge(crate::torture::log_id(t, index));
                    let end = r.is_ok().then(|| self.sim.journal_len());
                    self.push(LogCall::Purge { index, start, end });
                    live.retain(|&i, _| i > index);
                    purged = Some((index, t));
                    r.is_ok()
                }
            };
            if !ok {
                return; // poisoned: openraft stops too
            }
        }
        let _ = self.log.flush();
    }
}

fn reader(
    log: &LogCore<TypeConfig>,
    issued: &Mutex<HashMap<u64, (u64, u64)>>,
    calls: &Mutex<Vec<LogCall>>,
    stop: &AtomicBool,
    seed: u64,
) {
    let mut rng = Rng::new(Rng::derive(seed, 0x8EAD));
    while !stop.load(Ordering::Acquire) {
        let Ok((_, Some(last))) = log.log_state() else {
            std::thread::yield_now();
            continue;
        };
        let from = last.index.saturating_sub(rng.below(8));
        let Ok(entries) = log.entries(from..last.index + 1) else {
            return; // poisoned
        };
        for e in entries {
            let Some(issue) = crate::torture::issue_of(&e) else {
                calls.lock().push(LogCall::BadRead(format!(
                    "entry {} is not one of ours",
                    e.log_id
                )));
                continue;
            };
            let want = issued.lock().get(&issue).copied();
            if want != Some((e.log_id.index, e.log_id.leader_id.term)) {
                calls.lock().push(LogCall::BadRead(format!(
                    "read entry {issue} as {}, appended as {want:?}",
                    e.log_id
                )));
            }
        }
        std::thread::yield_now();
    }
}

impl ConcurrentWorkload for ConcurrentRaftLog {
    type Event = LogCall;
    type State = LogState;

    fn name(&self) -> String {
        "raft-log-mt".to_owned()
    }

    fn run(&self, sim: &SimFs, seed: u64) -> Result<Vec<LogCall>, BoxError> {
        let Ok(log) = LogCore::<TypeConfig>::open(
            &self.base.dir,
            options(&sim.durable(), self.base.regressions),
        ) else {
            return Ok(Vec::new());
        };
        let calls = Arc::new(Mutex::new(Vec::new()));
        let issued = Mutex::new(HashMap::new());
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let r = s.spawn(|| reader(&log, &issued, &calls, &stop, seed));
            Driver {
                log: &log,
                sim,
                calls: &calls,
                issued: &issued,
            }
            .run(seed, self.steps);
            stop.store(true, Ordering::Release);
            let _ = r.join();
        });
        drop(log); // joins the flusher: every callback has run
        let calls = std::mem::take(&mut *calls.lock());
        Ok(calls)
    }

    fn recover(&self, fs: &DurableFs) -> Result<LogState, BoxError> {
        self.base.recover_state(fs)
    }

    fn check(&self, history: &[LogCall], k: u64, state: &LogState) -> Verdict {
        let mut v = Verdict::default();
        // issue -> (index, term, prev, position, append start)
        let mut issued: HashMap<u64, (u64, u64, Option<u64>, usize, u64)> = HashMap::new();
        let mut acked: Vec<u64> = Vec::new();
        let mut first_failure: Option<u64> = None;
        let mut vote_floor: Option<u64> = None;
        let mut votes_started: Vec<u64> = Vec::new();
        let mut purge_floor: Option<u64> = None;
        let mut purge_ceiling: Option<u64> = None;
        // (index, position, start, end)
        let mut truncs: Vec<(u64, usize, u64, Option<u64>)> = Vec::new();
        let mut purges: Vec<(u64, usize, u64)> = Vec::new();
        for (pos, c) in history.iter().enumerate() {
            match c {
                LogCall::Issued {
                    issue,
                    index,
                    term,
                    prev,
                    start,
                } => {
                    issued.insert(*issue, (*index, *term, *prev, pos, *start));
                }
                LogCall::Acked { issues, at } => {
                    if first_failure.is_some_and(|f| f <= *at) {
                        v.wrong += 1;
                        v.problem(|| {
                            format!("entries {issues:?} acknowledged after a failed fsync")
                        });
                    }
                    if *at <= k {
                        acked.extend(issues);
                    }
                }
                LogCall::AckFailed { at } => {
                    first_failure = Some(first_failure.map_or(*at, |f| f.min(*at)));
                }
                LogCall::Vote { term, start, end } => {
                    if *start < k {
                        votes_started.push(*term);
                    }
                    if end.is_some_and(|e| e <= k) {
                        vote_floor = vote_floor.max(Some(*term));
                    }
                }
                LogCall::Truncate { index, start, end } => truncs.push((*index, pos, *start, *end)),
                LogCall::Purge { index, start, end } => {
                    purges.push((*index, pos, *start));
                    if *start < k {
                        purge_ceiling = purge_ceiling.max(Some(*index));
                    }
                    if end.is_some_and(|e| e <= k) {
                        purge_floor = purge_floor.max(Some(*index));
                    }
                }
                LogCall::BadRead(d) => {
                    v.wrong += 1;
                    v.problem(|| format!("reader: {d}"));
                }
            }
        }
        if let Some(f) = vote_floor {
            v.acked_checked += 1;
            if state.vote.is_none_or(|t| t < f) {
                v.lost += 1;
                v.problem(|| format!("vote went back: saved term {f}, recovered {:?}", state.vote));
            }
        }
        if let Some(t) = state.vote
            && !votes_started.contains(&t)
        {
            v.wrong += 1;
            v.problem(|| format!("recovered a vote for term {t} no save had started"));
        }
        if let Some(p) = purge_floor {
            v.acked_checked += 1;
            if state.purged.is_none_or(|s| s < p) {
                v.lost += 1;
                v.problem(|| {
                    format!(
                        "last purged went back: {p} returned, recovered {:?}",
                        state.purged
                    )
                });
            }
        }
        if state.purged > purge_ceiling {
            v.wrong += 1;
            v.problem(|| {
                format!(
                    "recovered purge {:?}, none that far had started",
                    state.purged
                )
            });
        }
        let mut expect = state.purged.map_or(1, |p| p + 1);
        let mut present: HashMap<u64, u64> = HashMap::new();
        for &(index, term, issue) in &state.entries {
            if index != expect {
                v.lost += 1;
                v.problem(|| format!("hole: entry at {index} where {expect} was expected"));
            }
            expect = index + 1;
            present.insert(index, issue);
            let Some(&(i, t, _, pos, start)) = issued.get(&issue) else {
                v.wrong += 1;
                v.problem(|| format!("entry {issue} at {index} was never appended"));
                continue;
            };
            if i != index || t != term || start >= k {
                v.wrong += 1;
                v.problem(|| format!("entry {issue} at {index} term {term}: appended at {i} term {t}, start {start}, crash {k}"));
            }
            if truncs
                .iter()
                .any(|&(ti, tp, _, end)| ti <= index && tp > pos && end.is_some_and(|e| e <= k))
            {
                v.resurrected += 1;
                v.problem(|| {
                    format!("entry {issue} at {index} came back after a truncate removed it")
                });
            }
        }
        for &(index, _, issue) in &state.entries {
            let Some(&(_, _, prev, _, _)) = issued.get(&issue) else {
                continue;
            };
            if let (Some(want), Some(&got)) = (prev, present.get(&index.wrapping_sub(1)))
                && want != got
            {
                v.wrong += 1;
                v.problem(|| format!("entry {issue} at {index} follows {got}, not {want}"));
            }
        }
        for issue in acked {
            let Some(&(index, _, _, pos, _)) = issued.get(&issue) else {
                continue;
            };
            let covered = truncs
                .iter()
                .any(|&(ti, tp, start, _)| ti <= index && tp > pos && start < k)
                || (state.purged.unwrap_or(0) >= index
                    && purges
                        .iter()
                        .any(|&(pi, pp, start)| pi >= index && pp > pos && start < k));
            if covered {
                continue;
            }
            v.acked_checked += 1;
            match present.get(&index) {
                Some(&got) if got == issue => {}
                Some(&got) => {
                    v.wrong += 1;
                    v.problem(|| {
                        format!("acknowledged entry {issue} at {index} replaced by {got}")
                    });
                }
                None => {
                    v.lost += 1;
                    v.problem(|| {
                        format!("acknowledged entry {issue} at {index} is missing (crash at {k})")
                    });
                }
            }
        }
        // Ordering: every entry appended before the recovered vote's first save is durable
        // too (unless truncated or purged since).
        if let Some(t) = state.vote {
            let first_save = history
                .iter()
                .position(|c| matches!(c, LogCall::Vote { term, .. } if *term == t))
                .unwrap_or(0);
            for (&issue, &(index, _, _, pos, _)) in &issued {
                if pos > first_save {
                    continue;
                }
                let covered = truncs
                    .iter()
                    .any(|&(ti, tp, start, _)| ti <= index && tp > pos && start < k)
                    || (state.purged.unwrap_or(0) >= index
                        && purges
                            .iter()
                            .any(|&(pi, pp, start)| pi >= index && pp > pos && start < k));
                if covered || present.get(&index) == Some(&issue) {
                    continue;
                }
                v.lost += 1;
                v.problem(|| {
                    format!("vote for term {t} is durable but entry {issue} at {index}, appended before it, is not")
                });
            }
        }
        v
    }
}
