//! Crash-torture workloads for `durable_fs::sim::harness` (the tests and `durable torture`
//! rows `raft-log` and `raft-sm`).
//!
//! `raft-log` drives [`LogCore`] as openraft does: appends (acknowledged by their callback,
//! which runs after the fsync), votes, truncations of a conflicting suffix (the next
//! entries then come from a newer leader), purges (also past the last entry), and
//! close/reopen cycles. The oracle: an entry whose callback said durable is there unless a
//! later truncate or purge covered it; no entry a returned truncate removed comes back; the
//! log has no hole and starts right after the last purged id; each entry follows the entry
//! it was appended after (log matching); the vote and the last purged id never go back from
//! what a returned call saved.
//!
//! `raft-sm` drives [`SmCore`]: applies of puts, deletes, blanks and membership changes;
//! snapshots built from a view taken before more applies; installs of a leader's snapshot
//! (ahead of the log); merges; reopens. The oracle keeps every state the machine went
//! through (one per entry); the recovered state must be exactly one of them, at or after
//! the last one acknowledged, and the current snapshot must be exactly one of them, no
//! older than the last snapshot published or installed.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use durable_fs::DurableFs;
use durable_fs::sim::Rng;
use durable_fs::sim::harness::{BoxError, Verdict, Workload};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, Membership};
use parking_lot::Mutex;

use crate::log::{FlushMode, LogCore, LogOptions, LogRegressions};
use crate::sm::{SmCore, SmOptions, SmRegressions};
use crate::snapshot::{SnapshotReader, SnapshotWriter};
use crate::types::{Entry, LogId, Request, SnapshotMeta, StoredMembership, TypeConfig, Vote};

pub(crate) fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

// ---------------------------------------------------------------------------------------
// raft-log

/// What the log workload records as it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEvent {
    /// Entry `issue` was appended at `index` by the leader of `term`, after entry `prev`
    /// (the entry live at `index - 1` then, if any).
    Issued {
        /// A unique number (the entry's key).
        issue: u64,
        /// Its index.
        index: u64,
        /// Its term.
        term: u64,
        /// The entry it follows.
        prev: Option<u64>,
    },
    /// Entry `issue`'s callback reported it durable.
    Acked(u64),
    /// `save_vote` for this term was called.
    VoteIssued(u64),
    /// `save_vote` for this term returned.
    VoteSaved(u64),
    /// `truncate(index)` was called.
    TruncateIssued(u64),
    /// `truncate(index)` returned.
    Truncated(u64),
    /// `purge(index)` was called.
    PurgeIssued(u64),
    /// `purge(index)` returned.
    Purged(u64),
}

/// What recovery of the log shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogState {
    /// Term of the saved vote.
    pub vote: Option<u64>,
    /// Index of the last purged entry.
    pub purged: Option<u64>,
    /// `(index, term, issue)` of every entry.
    pub entries: Vec<(u64, u64, u64)>,
}

/// The Raft log workload: `steps` operations per seed in `dir`.
#[derive(Clone, Debug)]
pub struct RaftLogWorkload {
    /// Operations per seed.
    pub steps: u32,
    /// Log directory on the simulated disk.
    pub dir: PathBuf,
    /// Known bugs put back (negative controls).
    pub regressions: LogRegressions,
}

impl Default for RaftLogWorkload {
    fn default() -> Self {
        RaftLogWorkload {
            steps: 60,
            dir: durable_fs::sim::sim_dir("raft-log"),
            regressions: LogRegressions::default(),
        }
    }
}

impl RaftLogWorkload {
    fn open(&self, fs: &DurableFs) -> Result<LogCore<TypeConfig>, BoxError> {
        let mut opts = LogOptions::default()
            .with_fs(fs.clone())
            .with_max_segment_bytes(4096)
            .with_wal_buffers(1024, 4096)
            .with_flush(FlushMode::Inline);
        opts.regressions = self.regressions;
        Ok(LogCore::open(&self.dir, opts)?)
    }
}

pub(crate) fn entry_of(issue: u64, index: u64, term: u64, pad: usize) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Request::Put {
            key: issue.to_le_bytes().to_vec(),
            value: vec![b'.'; pad],
        }),
    }
}

pub(crate) fn issue_of(e: &Entry) -> Option<u64> {
    match &e.payload {
        EntryPayload::Normal(Request::Put { key, .. }) => {
            Some(u64::from_le_bytes(key.as_slice().try_into().ok()?))
        }
        _ => None,
    }
}

impl Workload for RaftLogWorkload {
    type Ack = LogEvent;
    type State = LogState;

    fn name(&self) -> String {
        "raft-log".to_owned()
    }

    fn run(&self, fs: &DurableFs, seed: u64, ev: &mut Vec<LogEvent>) -> Result<(), BoxError> {
        let acks: Arc<Mutex<Vec<LogEvent>>> = Arc::new(Mutex::new(Vec::new()));
        let result = self.run_with(fs, seed, ev, &acks);
        // Callbacks that ran before a failure (or a crash) are acknowledgements too.
        ev.append(&mut acks.lock());
        result
    }

    fn recover(&self, fs: &DurableFs) -> Result<LogState, BoxError> {
        self.recover_state(fs)
    }

    fn check(&self, seed: u64, events: &[LogEvent], state: &LogState) -> Verdict {
        self.check_state(seed, events, state)
    }
}

impl RaftLogWorkload {
    fn run_with(
        &self,
        fs: &DurableFs,
        seed: u64,
        ev: &mut Vec<LogEvent>,
        acks: &Arc<Mutex<Vec<LogEvent>>>,
    ) -> Result<(), BoxError> {
        let mut rng = Rng::new(seed);
        let drain = |ev: &mut Vec<LogEvent>| ev.append(&mut acks.lock());
        let mut log = self.open(fs)?;
        // The model: what the log holds (index -> (term, issue)), the current term.
        let mut live: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut purged: Option<(u64, u64)> = None; // (index, term)
        let mut term = 1u64;
        let mut issue = 0u64;
        for _ in 0..self.steps {
            let last = live
                .keys()
                .next_back()
                .copied()
                .or(purged.map(|p| p.0))
                .unwrap_or(0);
            match rng.below(100) {
                0..=54 => {
                    let n = 1 + rng.below(3);
                    let mut entries = Vec::new();
                    let mut issues = Vec::new();
                    // Now and then an append over the last entries, without a truncate
                    // first (the log truncates them itself, durably, before it writes).
                    let floor = purged.map_or(1, |p| p.0 + 1);
                    let from = if rng.chance(1, 10) {
                        (last + 1).saturating_sub(1 + rng.below(2)).max(floor)
                    } else {
                        last + 1
                    };
                    let implicit = from <= last;
                    if implicit {
                        term += 1; // a newer leader's entries
                        ev.push(LogEvent::TruncateIssued(from));
                        live.retain(|&i, _| i < from);
                    }
                    for k in 0..n {
                        issue += 1;
                        let index = from + k;
                        let prev = live.get(&(index - 1)).map(|(_, i)| *i);
                        ev.push(LogEvent::Issued {
                            issue,
                            index,
                            term,
                            prev,
                        });
                        live.insert(index, (term, issue));
                        entries.push(entry_of(issue, index, term, rng.below_usize(200)));
                        issues.push(issue);
                    }
                    let sink = Arc::clone(acks);
                    log.append(
                        entries,
                        Box::new(move |r| {
                            if r.is_ok() {
                                sink.lock().extend(issues.into_iter().map(LogEvent::Acked));
                            }
                        }),
                    )?;
                    if implicit {
                        ev.push(LogEvent::Truncated(from));
                    }
                }
                55..=66 => {
                    log.flush()?;
                }
                67..=72 => {
                    if rng.chance(1, 2) {
                        term += 1;
                    }
                    ev.push(LogEvent::VoteIssued(term));
                    log.save_vote(&Vote::new(term, 1))?;
                    ev.push(LogEvent::VoteSaved(term));
                }
                73..=81 => {
                    let floor = purged.map_or(1, |p| p.0 + 1);
                    let at = last.saturating_sub(rng.below(4)).max(floor);
                    if at > last {
                        continue;
                    }
                    ev.push(LogEvent::TruncateIssued(at));
                    log.truncate(at)?;
                    ev.push(LogEvent::Truncated(at));
                    live.retain(|&i, _| i < at);
                    // What follows comes from a newer leader.
                    term += 1;
                }
                82..=88 => {
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
                    ev.push(LogEvent::PurgeIssued(index));
                    log.purge(log_id(t, index))?;
                    ev.push(LogEvent::Purged(index));
                    live.retain(|&i, _| i > index);
                    purged = Some((index, t));
                }
                _ => {
                    log.close()?;
                    drain(ev);
                    log = self.open(fs)?;
                }
            }
            drain(ev);
        }
        log.close()?;
        drain(ev);
        Ok(())
    }

    pub(crate) fn recover_state(&self, fs: &DurableFs) -> Result<LogState, BoxError> {
        let log = self.open(fs)?;
        let (purged, _) = log.log_state()?;
        let vote = log.vote()?.map(|v| v.leader_id.term);
        let entries = log
            .entries(0..u64::MAX)?
            .iter()
            .map(|e| {
                let issue = issue_of(e).ok_or("an entry that was never written")?;
                Ok((e.log_id.index, e.log_id.leader_id.term, issue))
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        log.close()?;
        Ok(LogState {
            vote,
            purged: purged.map(|p| p.index),
            entries,
        })
    }

    fn check_state(&self, _seed: u64, events: &[LogEvent], state: &LogState) -> Verdict {
        let mut v = Verdict::default();
        // issue -> (index, term, prev, position of its Issued event)
        let mut issued: HashMap<u64, (u64, u64, Option<u64>, usize)> = HashMap::new();
        let mut acked: Vec<(u64, usize)> = Vec::new();
        let mut votes_issued: Vec<u64> = Vec::new();
        let mut vote_saved: Option<u64> = None;
        let mut purge_issued: Option<u64> = None;
        let mut purge_returned: Option<u64> = None;
        // (index, position) of truncates and purges issued and returned
        let mut truncs_issued: Vec<(u64, usize)> = Vec::new();
        let mut truncs_returned: Vec<(u64, usize)> = Vec::new();
        let mut purges_issued: Vec<(u64, usize)> = Vec::new();
        for (pos, e) in events.iter().enumerate() {
            match e {
                LogEvent::Issued {
                    issue,
                    index,
                    term,
                    prev,
                } => {
                    issued.insert(*issue, (*index, *term, *prev, pos));
                }
                LogEvent::Acked(i) => acked.push((*i, pos)),
                LogEvent::VoteIssued(t) => votes_issued.push(*t),
                LogEvent::VoteSaved(t) => vote_saved = Some(*t),
                LogEvent::TruncateIssued(i) => truncs_issued.push((*i, pos)),
                // Paired with its issue: what was appended before the truncate started is
                // what it removed (an append over the last entries truncates, then writes).
                LogEvent::Truncated(i) => {
                    let started = truncs_issued
                        .iter()
                        .rev()
                        .find(|(t, _)| t == i)
                        .map_or(pos, |&(_, p)| p);
                    truncs_returned.push((*i, started));
                }
                LogEvent::PurgeIssued(i) => {
                    purges_issued.push((*i, pos));
                    purge_issued = purge_issued.max(Some(*i));
                }
                LogEvent::Purged(i) => purge_returned = purge_returned.max(Some(*i)),
            }
        }
        // The vote and the last purged id.
        if let Some(saved) = vote_saved {
            v.acked_checked += 1;
            if state.vote.is_none_or(|t| t < saved) {
                v.lost += 1;
                v.problem(|| {
                    format!(
                        "vote went back: saved term {saved}, recovered {:?}",
                        state.vote
                    )
                });
            }
        }
        if let Some(t) = state.vote
            && !votes_issued.contains(&t)
        {
            v.wrong += 1;
            v.problem(|| format!("recovered a vote for term {t} that was never saved"));
        }
        if let Some(p) = purge_returned {
            v.acked_checked += 1;
            if state.purged.is_none_or(|s| s < p) {
                v.lost += 1;
                v.problem(|| {
                    format!(
                        "last purged went back: purged {p}, recovered {:?}",
                        state.purged
                    )
                });
            }
        }
        if state.purged > purge_issued {
            v.wrong += 1;
            v.problem(|| format!("recovered purge {:?} beyond any issued", state.purged));
        }
        // No hole: the log starts right after the last purged index (or at 1).
        let mut expect = state.purged.map_or(1, |p| p + 1);
        let mut present: HashMap<u64, u64> = HashMap::new();
        for &(index, term, issue) in &state.entries {
            if index != expect {
                v.lost += 1;
                v.problem(|| format!("hole: entry at {index} where {expect} was expected"));
            }
            expect = index + 1;
            present.insert(index, issue);
            match issued.get(&issue) {
                Some(&(i, t, _, _)) if i == index && t == term => {}
                _ => {
                    v.wrong += 1;
                    v.problem(|| format!("entry at {index} (term {term}) holds issue {issue}, never appended there"));
                    continue;
                }
            }
            let at = issued.get(&issue).map_or(0, |x| x.3);
            if truncs_returned.iter().any(|&(t, p)| t <= index && p > at) {
                v.resurrected += 1;
                v.problem(|| {
                    format!("entry {issue} at {index} came back after a truncate removed it")
                });
            }
        }
        // Log matching: each entry follows the entry it was appended after.
        for &(index, _, issue) in &state.entries {
            let Some(&(_, _, prev, _)) = issued.get(&issue) else {
                continue;
            };
            if let (Some(want), Some(&got)) = (prev, present.get(&(index.wrapping_sub(1))))
                && want != got
            {
                v.wrong += 1;
                v.problem(|| format!("entry {issue} at {index} follows {got}, not {want}"));
            }
        }
        // Acknowledged entries.
        for &(issue, _) in &acked {
            let Some(&(index, _, _, at)) = issued.get(&issue) else {
                continue;
            };
            let recovered_purge = state.purged.unwrap_or(0);
            let dropped = truncs_issued.iter().any(|&(t, p)| t <= index && p > at)
                || (recovered_purge >= index
                    && purges_issued.iter().any(|&(p, pos)| p >= index && pos > at));
            if dropped {
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
                    v.problem(|| format!("acknowledged entry {issue} at {index} is missing"));
                }
            }
        }
        // Ordering: the recovered vote was saved after every entry appended before its
        // first save; those entries are durable too (unless truncated or purged since).
        if let Some(t) = state.vote {
            let first_save = events
                .iter()
                .position(|e| *e == LogEvent::VoteIssued(t))
                .unwrap_or(0);
            let recovered_purge = state.purged.unwrap_or(0);
            for (&issue, &(index, _, _, at)) in &issued {
                if at > first_save {
                    continue;
                }
                let dropped = truncs_issued.iter().any(|&(tr, p)| tr <= index && p > at)
                    || (recovered_purge >= index
                        && purges_issued.iter().any(|&(p, pos)| p >= index && pos > at));
                if dropped || present.get(&index) == Some(&issue) {
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

// ---------------------------------------------------------------------------------------
// raft-sm

type Pairs = BTreeMap<Vec<u8>, Vec<u8>>;

/// One state the state machine went through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmModel {
    /// Last applied log id.
    pub applied: Option<LogId>,
    /// The membership in effect.
    pub membership: StoredMembership,
    /// The user pairs.
    pub pairs: Pairs,
}

/// What the state machine workload records as it runs (positions index the history).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmEvent {
    /// History state `pos` (after one more entry, or an installed snapshot) exists.
    State {
        /// Its position.
        pos: usize,
        /// The state.
        model: Box<SmModel>,
    },
    /// The state machine acknowledged history state `pos` durable (apply or install
    /// returned).
    Acked(usize),
    /// A snapshot of history state `pos` was published as current (build or install
    /// returned).
    SnapshotAcked(usize),
}

/// What recovery of the state machine shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmState {
    /// The live state.
    pub live: SmModel,
    /// The current snapshot's state.
    pub snapshot: Option<SmModel>,
}

/// The state machine workload: `steps` operations per seed in `dir`.
#[derive(Clone, Debug)]
pub struct RaftSmWorkload {
    /// Operations per seed.
    pub steps: u32,
    /// State machine directory on the simulated disk.
    pub dir: PathBuf,
    /// Known bugs put back (negative controls).
    pub regressions: SmRegressions,
}

impl Default for RaftSmWorkload {
    fn default() -> Self {
        RaftSmWorkload {
            steps: 30,
            dir: durable_fs::sim::sim_dir("raft-sm"),
            regressions: SmRegressions::default(),
        }
    }
}

impl RaftSmWorkload {
    fn open(&self, fs: &DurableFs) -> Result<SmCore, BoxError> {
        let mut opts = SmOptions::default()
            .with_fs(fs.clone())
            .with_max_file_bytes(4096)
            .with_max_batch_bytes(256)
            .with_merge_dead_bytes(u64::MAX);
        opts.regressions = self.regressions;
        Ok(SmCore::open(&self.dir, opts)?)
    }
}

fn apply_to(model: &mut SmModel, e: &Entry) {
    match &e.payload {
        EntryPayload::Blank => {}
        EntryPayload::Normal(Request::Put { key, value }) => {
            model.pairs.insert(key.clone(), value.clone());
        }
        EntryPayload::Normal(Request::Delete { key }) => {
            model.pairs.remove(key);
        }
        EntryPayload::Membership(m) => {
            model.membership = StoredMembership::new(Some(e.log_id), m.clone());
        }
    }
    model.applied = Some(e.log_id);
}

fn random_entry(rng: &mut Rng, id: LogId, issue: u64) -> Entry {
    let key = format!("k{}", rng.below(8)).into_bytes();
    let payload = match rng.below(10) {
        0..=5 => {
            let mut value = format!("v{issue}|").into_bytes();
            value.extend(std::iter::repeat_n(b'x', rng.below_usize(120)));
            EntryPayload::Normal(Request::Put { key, value })
        }
        6..=7 => EntryPayload::Normal(Request::Delete { key }),
        8 => EntryPayload::Blank,
        _ => {
            let voters: std::collections::BTreeSet<u64> =
                (1..=3).filter(|_| rng.chance(2, 3)).chain([1]).collect();
            let nodes: BTreeMap<u64, BasicNode> = voters
                .iter()
                .map(|&n| (n, BasicNode::new(format!("127.0.0.1:{}", 7000 + n))))
                .collect();
            EntryPayload::Membership(Membership::new(vec![voters], nodes))
        }
    };
    Entry {
        log_id: id,
        payload,
    }
}

fn snapshot_model(meta: &SnapshotMeta, bytes: &[u8]) -> Result<SmModel, BoxError> {
    let path = PathBuf::from("snapshot");
    let mut r = SnapshotReader::new(bytes, &path)?;
    let mut pairs = Pairs::new();
    while let Some((k, v)) = r.next_pair(&path)? {
        pairs.insert(k.to_vec(), v.to_vec());
    }
    Ok(SmModel {
        applied: meta.last_log_id,
        membership: meta.last_membership.clone(),
        pairs,
    })
}

impl Workload for RaftSmWorkload {
    type Ack = SmEvent;
    type State = SmState;

    fn name(&self) -> String {
        "raft-sm".to_owned()
    }

    fn run(&self, fs: &DurableFs, seed: u64, ev: &mut Vec<SmEvent>) -> Result<(), BoxError> {
        let mut rng = Rng::new(seed);
        let mut sm = self.open(fs)?;
        let mut model = SmModel {
            applied: None,
            membership: StoredMembership::default(),
            pairs: Pairs::new(),
        };
        // History state 0 is the empty machine (the check starts from it).
        let mut pos = 0usize;
        let mut term = 1u64;
        let mut issue = 0u64;
        // The applied id of the current snapshot.
        let mut current: Option<Option<LogId>> = None;
        let apply_batch = |sm: &SmCore,
                           rng: &mut Rng,
                           model: &mut SmModel,
                           pos: &mut usize,
                           ev: &mut Vec<SmEvent>,
                           term: u64,
                           issue: &mut u64|
         -> Result<(), BoxError> {
            let n = 1 + rng.below(4);
            let mut entries = Vec::new();
            for _ in 0..n {
                *issue += 1;
                let index = model.applied.map_or(1, |a| a.index + 1);
                let e = random_entry(rng, log_id(term, index), *issue);
                apply_to(model, &e);
                *pos += 1;
                ev.push(SmEvent::State {
                    pos: *pos,
                    model: Box::new(model.clone()),
                });
                entries.push(e);
            }
            sm.apply(entries)?;
            ev.push(SmEvent::Acked(*pos));
            Ok(())
        };
        for _ in 0..self.steps {
            match rng.below(100) {
                0..=54 => {
                    apply_batch(&sm, &mut rng, &mut model, &mut pos, ev, term, &mut issue)?;
                }
                55..=69 => {
                    // A snapshot from a view, while more entries are applied.
                    let view = sm.view()?;
                    let view_pos = pos;
                    let view_applied = model.applied;
                    if rng.chance(2, 3) {
                        apply_batch(&sm, &mut rng, &mut model, &mut pos, ev, term, &mut issue)?;
                    }
                    let (meta, _) = sm.build(view)?;
                    if meta.last_log_id != view_applied {
                        return Err("a snapshot's applied id is not its view's".into());
                    }
                    if current.is_none_or(|c| c < view_applied) {
                        current = Some(view_applied);
                        ev.push(SmEvent::SnapshotAcked(view_pos));
                    }
                }
                70..=79 => {
                    // A leader's snapshot, ahead of this machine.
                    term += 1;
                    let mut leader = model.clone();
                    for _ in 0..rng.below(4) {
                        issue += 1;
                        let index = leader.applied.map_or(1, |a| a.index + 1);
                        let e = random_entry(&mut rng, log_id(term, index), issue);
                        apply_to(&mut leader, &e);
                    }
                    let index = leader.applied.map_or(1, |a| a.index + 1 + rng.below(3));
                    leader.applied = Some(log_id(term, index));
                    let meta = SnapshotMeta {
                        last_log_id: leader.applied,
                        last_membership: leader.membership.clone(),
                        snapshot_id: format!("leader-{index}"),
                    };
                    let mut w = SnapshotWriter::new(&meta)?;
                    for (k, v) in &leader.pairs {
                        w.push(k, v)?;
                    }
                    let bytes = w.finish();
                    model = leader;
                    pos += 1;
                    ev.push(SmEvent::State {
                        pos,
                        model: Box::new(model.clone()),
                    });
                    sm.install(&meta, &bytes)?;
                    ev.push(SmEvent::Acked(pos));
                    current = Some(model.applied);
                    ev.push(SmEvent::SnapshotAcked(pos));
                }
                80..=87 => sm.compact()?,
                _ => {
                    drop(sm);
                    sm = self.open(fs)?;
                }
            }
        }
        Ok(())
    }

    fn recover(&self, fs: &DurableFs) -> Result<SmState, BoxError> {
        let sm = self.open(fs)?;
        let (applied, membership) = sm.applied_state()?;
        let pairs = sm.pairs()?.into_iter().collect();
        let snapshot = match sm.current_snapshot()? {
            Some((meta, bytes)) => Some(snapshot_model(&meta, &bytes)?),
            None => None,
        };
        Ok(SmState {
            live: SmModel {
                applied,
                membership,
                pairs,
            },
            snapshot,
        })
    }

    fn check(&self, _seed: u64, events: &[SmEvent], state: &SmState) -> Verdict {
        let mut v = Verdict::default();
        let empty = SmModel {
            applied: None,
            membership: StoredMembership::default(),
            pairs: Pairs::new(),
        };
        let mut history: Vec<&SmModel> = vec![&empty];
        let mut acked = 0usize;
        let mut snap_acked: Option<usize> = None;
        for e in events {
            match e {
                SmEvent::State { model, .. } => history.push(model),
                SmEvent::Acked(p) => acked = acked.max(*p),
                SmEvent::SnapshotAcked(p) => snap_acked = snap_acked.max(Some(*p)),
            }
        }
        v.acked_checked += 1;
        match history.iter().rposition(|m| **m == state.live) {
            Some(j) if j >= acked => {}
            Some(j) => {
                v.lost += 1;
                v.problem(|| {
                    format!("state went back to history {j}, but {acked} was acknowledged")
                });
            }
            None => {
                v.wrong += 1;
                v.problem(|| {
                    format!(
                        "recovered state (applied {:?}, {} pairs) is none the machine went through",
                        state.live.applied,
                        state.live.pairs.len()
                    )
                });
            }
        }
        match (&state.snapshot, snap_acked) {
            (None, None) => {}
            (None, Some(p)) => {
                v.lost += 1;
                v.problem(|| format!("snapshot of history {p} was published, none recovered"));
            }
            (Some(s), acked_snap) => {
                v.acked_checked += u64::from(acked_snap.is_some());
                match history.iter().position(|m| *m == s) {
                    None => {
                        v.wrong += 1;
                        v.problem(|| {
                            format!(
                                "snapshot at {:?} is no state the machine went through",
                                s.applied
                            )
                        });
                    }
                    Some(j) => {
                        let floor = acked_snap.and_then(|p| history.get(p)).map(|m| m.applied);
                        if floor.is_some_and(|f| s.applied < f) {
                            v.lost += 1;
                            v.problem(|| format!("snapshot went back to history {j}"));
                        }
                    }
                }
            }
        }
        v
    }
}
