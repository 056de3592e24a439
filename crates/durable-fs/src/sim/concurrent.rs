//! Concurrent crash torture: threads run freely on one [`SimFs`]; crash states come from
//! every prefix of what they did to the disk.
//!
//! The single-threaded harness ([`super::harness`]) reruns a deterministic workload once per
//! crash point. Threads are not deterministic, so this one runs each seed *once*, with the
//! simulator's journal on ([`SimFs::start_journal`]): one lock serialises every change to the
//! disk, so the journal is a total order of what all threads did. The workload stamps each
//! call it makes with the journal position before the call and after it returned
//! ([`SimFs::journal_len`]); a call's changes all lie between its two stamps. Then, for every
//! prefix `k` of the journal (or a seeded sample), [`super::Journal::for_each_crash`] builds
//! what a power cut after change `k` leaves (strict, torn or reordered), the workload
//! recovers it, and its oracle checks the recovered state against the stamped history:
//!
//! - a call that returned `Ok` with its end stamp `<= k` was acknowledged before the cut;
//!   one that started at or after `k` had done nothing yet; the others were in flight and
//!   may or may not have taken effect;
//! - recovery is run twice (the second time on a strict crash of the first recovery's disk)
//!   and must agree;
//! - the end of the run is also checked as a process crash (kill -9: the page cache
//!   survives, nothing is lost), with every call acknowledged.
//!
//! No scheduler parks threads inside the simulator (that deadlocks against engine locks and
//! condition variables); different seeds and the machine's own timing give different
//! interleavings, and a failure names its seed and crash point (the recorded run, not the
//! interleaving, is what can be replayed). Fsync failures are explored by running a seed a
//! second time with EIO at a seeded k-th file sync ([`Config::eio`]).

use std::fmt;

use super::harness::{BoxError, Report, Verdict, points};
use super::{CrashMode, Fault, FaultError, OpKind, Rng, SimFs};
use crate::durable::DurableFs;

/// A concurrent workload and its oracle.
pub trait ConcurrentWorkload: Sync {
    /// One stamped call of the history.
    type Event: Clone + fmt::Debug + Send;
    /// What recovery sees, compared for stability across recoveries.
    type State: PartialEq + fmt::Debug;

    /// A short name for reports (`bitcask-mt`, ...).
    fn name(&self) -> String;

    /// Sets up what the workload needs (its directory), before the journal starts.
    fn prepare(&self, fs: &DurableFs) -> Result<(), BoxError> {
        let _ = fs;
        Ok(())
    }

    /// Runs the seeded workload's threads on `sim` (journal running) to the end and returns
    /// the history: every call, stamped with [`SimFs::journal_len`] before it started and
    /// after it returned. Calls failing is part of the run (after an injected EIO every
    /// call fails); an `Err` here means the workload itself broke.
    fn run(&self, sim: &SimFs, seed: u64) -> Result<Vec<Self::Event>, BoxError>;

    /// Opens (recovers) the store on `fs` and reads its whole state.
    fn recover(&self, fs: &DurableFs) -> Result<Self::State, BoxError>;

    /// Checks `state`, recovered after a power cut following the first `crash_point` journal
    /// changes (`u64::MAX`: a process crash after the run, everything acknowledged).
    fn check(&self, history: &[Self::Event], crash_point: u64, state: &Self::State) -> Verdict;
}

/// How to run the concurrent harness.
#[derive(Clone, Debug)]
pub struct Config {
    /// The workload seeds.
    pub seeds: Vec<u64>,
    /// The crash mode.
    pub mode: CrashMode,
    /// Make directory syncs no-ops.
    pub lying_dir_sync: bool,
    /// At most this many crash points per run (a seeded sample, always with the last).
    pub max_points_per_seed: Option<usize>,
    /// Also run each seed with EIO at a seeded k-th file sync.
    pub eio: bool,
}

impl Config {
    /// Every crash point of `seeds` in `mode`, with EIO runs, honest directory syncs.
    pub fn new(seeds: impl IntoIterator<Item = u64>, mode: CrashMode) -> Self {
        Config {
            seeds: seeds.into_iter().collect(),
            mode,
            lying_dir_sync: false,
            max_points_per_seed: None,
            eio: true,
        }
    }
}

/// Runs the workload over `cfg.seeds`; `progress(done, total)` after each crash state.
pub fn run<W: ConcurrentWorkload>(
    w: &W,
    cfg: &Config,
    progress: &mut dyn FnMut(u64, u64),
) -> Report {
    let mut report = Report::new(w.name(), cfg.mode, cfg.lying_dir_sync);
    for &seed in &cfg.seeds {
        report.seeds += 1;
        let syncs = run_seed(w, cfg, seed, None, &mut report, progress);
        if cfg.eio && syncs > 0 {
            let mut rng = Rng::new(Rng::derive(seed, 0xE10));
            let nth = 1 + rng.below(syncs);
            run_seed(w, cfg, seed, Some(nth), &mut report, progress);
        }
    }
    report
}

/// One run of `seed` (with EIO at the `eio`-th file sync) and its crash states; returns the
/// number of file syncs the run made.
fn run_seed<W: ConcurrentWorkload>(
    w: &W,
    cfg: &Config,
    seed: u64,
    eio: Option<u64>,
    report: &mut Report,
    progress: &mut dyn FnMut(u64, u64),
) -> u64 {
    // Failures in an EIO run say so.
    let note = |(mut v, e): (Verdict, Option<String>)| {
        if let Some(nth) = eio {
            v.detail = v.detail.map(|d| format!("(EIO at file sync {nth}) {d}"));
            return (v, e.map(|e| format!("(EIO at file sync {nth}) {e}")));
        }
        (v, e)
    };
    let sim = SimFs::new();
    if let Err(e) = w.prepare(&sim.durable()) {
        report.add(
            seed,
            0,
            Verdict::default(),
            Some(format!("prepare failed: {e}")),
        );
        return 0;
    }
    sim.set_lying_dir_sync(cfg.lying_dir_sync);
    let syncs_before = sim.ops_of(OpKind::Sync);
    if let Some(nth) = eio {
        sim.inject(Fault::once(
            OpKind::Sync,
            syncs_before + nth,
            FaultError::Eio,
        ));
    }
    sim.start_journal();
    let history = match w.run(&sim, seed) {
        Ok(h) => h,
        Err(e) => {
            report.add(
                seed,
                0,
                Verdict::default(),
                Some(format!("workload failed: {e}")),
            );
            return 0;
        }
    };
    let syncs = sim.ops_of(OpKind::Sync) - syncs_before;
    let Some(journal) = sim.journal() else {
        return syncs;
    };
    let n = journal.len();
    let pts = points(n, cfg.max_points_per_seed, seed ^ eio.unwrap_or(0));
    let total = pts.len() as u64 + 1;
    let mut done = 0;
    let lying = cfg.lying_dir_sync;
    journal.for_each_crash(
        &pts,
        cfg.mode,
        |k| Rng::derive(seed ^ eio.unwrap_or(0), k),
        |k, image| {
            image.set_lying_dir_sync(lying);
            let (verdict, error) = note(check_image(w, &history, k, &image, lying));
            report.add(seed, k, verdict, error);
            done += 1;
            progress(done, total);
        },
    );
    // A process crash after the run: the page cache survives, everything returned counts.
    let image = journal.live_image();
    image.set_lying_dir_sync(lying);
    let (verdict, error) = note(check_image(w, &history, u64::MAX, &image, lying));
    report.add(seed, n, verdict, error);
    progress(total, total);
    syncs
}

/// Recovers `image`, checks it, and recovers a strict crash of the result again.
fn check_image<W: ConcurrentWorkload>(
    w: &W,
    history: &[W::Event],
    k: u64,
    image: &SimFs,
    lying: bool,
) -> (Verdict, Option<String>) {
    let state = match w.recover(&image.durable()) {
        Ok(s) => s,
        Err(e) => return (Verdict::default(), Some(format!("recovery failed: {e}"))),
    };
    let verdict = w.check(history, k, &state);
    let again = image.crash(CrashMode::Strict, 0);
    again.set_lying_dir_sync(lying);
    let error = match w.recover(&again.durable()) {
        Ok(s2) if s2 == state => None,
        Ok(s2) => Some(format!(
            "second recovery disagrees: first {state:?}, then {s2:?}"
        )),
        Err(e) => Some(format!("second recovery failed: {e}")),
    };
    (verdict, error)
}
