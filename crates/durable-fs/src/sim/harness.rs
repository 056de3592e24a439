//! The crash harness: run a workload on [`SimFs`], cut the power at every operation (or a
//! seeded sample), recover, and check an oracle.
//!
//! For each seed the harness first runs the workload to the end to count its operations `n`.
//! Then, for each crash point `k` in `0..=n` (`n` meaning "after the last operation"), it
//! reruns the workload on a fresh [`SimFs`] with a crash scheduled before operation `k`, takes
//! the surviving image in the chosen [`CrashMode`], recovers it with the workload's own
//! recovery, and checks:
//!
//! 1. every acknowledged write is present with its value, no acknowledged delete is undone,
//!    and the state is one the workload could have produced (the workload's
//!    [`Workload::check`]);
//! 2. recovery is stable: the recovered image, crashed again (strict), recovers to the same
//!    state, so whatever recovery repaired was made durable.
//!
//! A failure records the seed, mode and crash point; [`replay`] reruns exactly that point.

use std::error::Error as StdError;
use std::fmt;

use super::{CrashMode, Rng, SimFs};
use crate::durable::DurableFs;

/// Errors a workload returns; any error type will do.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// What one recovery check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verdict {
    /// Acknowledged writes (and deletes) checked.
    pub acked_checked: u64,
    /// Acknowledged writes missing after recovery.
    pub lost: u64,
    /// Keys or records present with a value that was never written there, or out of order.
    pub wrong: u64,
    /// Acknowledged deletes or removals undone by the crash.
    pub resurrected: u64,
    /// Reads that returned a value the crash then took back (seen before it was durable).
    pub phantom_reads: u64,
    /// The first problem, in words.
    pub detail: Option<String>,
}

impl Verdict {
    /// Records a problem; the first one becomes the `detail`.
    pub fn problem(&mut self, detail: impl FnOnce() -> String) {
        if self.detail.is_none() {
            self.detail = Some(detail());
        }
    }

    /// True when nothing was lost, wrong, resurrected or read before it was durable.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.wrong == 0 && self.resurrected == 0 && self.phantom_reads == 0
    }
}

/// A workload and its oracle, plugged into the harness by each engine.
pub trait Workload: Sync {
    /// What one acknowledgement says (for example "key k = v is durable").
    type Ack: Clone + fmt::Debug + Send;
    /// What recovery sees, compared for stability across recoveries.
    type State: PartialEq + fmt::Debug;

    /// A short name for reports (`wal`, `bitcask`, ...).
    fn name(&self) -> String;

    /// Sets up what the workload needs before it starts (say, its directory), always with
    /// honest directory syncs, so that `--lying-dir-sync` shows what the *engine* loses.
    fn prepare(&self, fs: &DurableFs) -> Result<(), BoxError> {
        let _ = fs;
        Ok(())
    }

    /// Runs the seeded workload against `fs`, pushing to `acks` each time the engine
    /// acknowledges something as durable. Must be deterministic for a seed, and must return
    /// at the first error (after a crash every call fails).
    fn run(&self, fs: &DurableFs, seed: u64, acks: &mut Vec<Self::Ack>) -> Result<(), BoxError>;

    /// Opens (recovers) the store on `fs` and reads its whole state.
    fn recover(&self, fs: &DurableFs) -> Result<Self::State, BoxError>;

    /// Checks the recovered `state` against what was acknowledged by the run of `seed`.
    fn check(&self, seed: u64, acks: &[Self::Ack], state: &Self::State) -> Verdict;
}

/// How to run the harness.
#[derive(Clone, Debug)]
pub struct Config {
    /// The workload seeds.
    pub seeds: Vec<u64>,
    /// The crash mode.
    pub mode: CrashMode,
    /// Make directory syncs no-ops (to show what that bug loses).
    pub lying_dir_sync: bool,
    /// At most this many crash points per seed (a seeded sample, always including the last);
    /// `None` tries them all.
    pub max_points_per_seed: Option<usize>,
    /// Bit rot after the crash: one seeded bit of one file's surviving (synced) bytes is
    /// flipped before recovery. A recovery that refuses naming that file counts in
    /// [`Report::rot_refused`]; one that cuts the damage and keeps the cut bytes in a
    /// `quarantine/` directory counts in [`Report::rot_cut_kept`]; a silent loss or a wrong
    /// value fails as always.
    pub bit_rot: bool,
}

impl Config {
    /// Every crash point of `seeds` in `mode`, honest directory syncs.
    pub fn new(seeds: impl IntoIterator<Item = u64>, mode: CrashMode) -> Self {
        Config {
            seeds: seeds.into_iter().collect(),
            mode,
            lying_dir_sync: false,
            max_points_per_seed: None,
            bit_rot: false,
        }
    }
}

/// Where a check failed: enough to [`replay`] it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Workload seed.
    pub seed: u64,
    /// Crash mode.
    pub mode: CrashMode,
    /// Crash point (operation index).
    pub crash_point: u64,
    /// Whether directory syncs were lying.
    pub lying_dir_sync: bool,
    /// Whether bit rot was injected.
    pub bit_rot: bool,
    /// What went wrong.
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} mode {} crash point {}{}: {}",
            self.seed,
            self.mode,
            self.crash_point,
            if self.lying_dir_sync {
                " (lying directory sync)"
            } else {
                ""
            },
            self.detail
        )
    }
}

/// The totals of one harness run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The workload's name.
    pub workload: String,
    /// The crash mode.
    pub mode: CrashMode,
    /// Whether directory syncs were lying.
    pub lying_dir_sync: bool,
    /// Seeds run.
    pub seeds: u64,
    /// Crash states recovered and checked.
    pub crash_states: u64,
    /// Acknowledged writes checked, summed over crash states.
    pub acked_checked: u64,
    /// Acknowledged writes lost.
    pub lost: u64,
    /// Wrong values.
    pub wrong: u64,
    /// Resurrected deletes.
    pub resurrected: u64,
    /// Reads of values that a crash then took back.
    pub phantom_reads: u64,
    /// Recoveries that failed, or that a second recovery disagreed with.
    pub recovery_errors: u64,
    /// Under bit rot: crash states whose recovery refused, naming the damaged file (a correct
    /// answer, not a failure).
    pub rot_refused: u64,
    /// Under bit rot: crash states whose recovery cut the damage as a torn tail and kept the
    /// cut bytes in quarantine, reported (the flip fell in records no later write or seal had
    /// proved durable, where it looks exactly like a torn write): not a silent loss.
    pub rot_cut_kept: u64,
    /// Bit rot was injected ([`Config::bit_rot`]).
    pub bit_rot: bool,
    /// The first failure, for replay.
    pub first_failure: Option<Failure>,
}

impl Report {
    /// True when nothing was lost, wrong, resurrected, read before it was durable, or
    /// unrecoverable.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.wrong == 0
            && self.resurrected == 0
            && self.phantom_reads == 0
            && self.recovery_errors == 0
    }

    /// An empty report for `workload`.
    pub fn new(workload: String, mode: CrashMode, lying_dir_sync: bool) -> Self {
        Report {
            workload,
            mode,
            lying_dir_sync,
            seeds: 0,
            crash_states: 0,
            acked_checked: 0,
            lost: 0,
            wrong: 0,
            resurrected: 0,
            phantom_reads: 0,
            recovery_errors: 0,
            rot_refused: 0,
            rot_cut_kept: 0,
            bit_rot: false,
            first_failure: None,
        }
    }

    /// Adds one crash state's verdict (and recovery error, if any) at `seed`/`point`.
    pub fn add(&mut self, seed: u64, point: u64, verdict: Verdict, recovery_error: Option<String>) {
        self.crash_states += 1;
        self.acked_checked += verdict.acked_checked;
        self.lost += verdict.lost;
        self.wrong += verdict.wrong;
        self.resurrected += verdict.resurrected;
        self.phantom_reads += verdict.phantom_reads;
        let clean = verdict.is_clean();
        let detail = match (recovery_error, verdict.detail) {
            (Some(e), _) => {
                self.recovery_errors += 1;
                Some(e)
            }
            (None, d) if !clean => d,
            _ => None,
        };
        if let Some(detail) = detail {
            self.first_failure.get_or_insert(Failure {
                seed,
                mode: self.mode,
                crash_point: point,
                lying_dir_sync: self.lying_dir_sync,
                bit_rot: self.bit_rot,
                detail,
            });
        }
    }
}

/// What one crash point produced.
#[derive(Debug, Default)]
struct PointResult {
    verdict: Verdict,
    recovery_error: Option<String>,
    /// Bit rot was refused, naming the damaged file.
    rot_refused: bool,
    /// Bit rot was cut as a torn tail, and the cut bytes kept in quarantine.
    rot_cut_kept: bool,
}

/// Every file under `/` in `fs`, with its length, in a deterministic order.
fn all_files(fs: &DurableFs) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from("/")];
    while let Some(dir) = dirs.pop() {
        let Ok(mut names) = fs.list(&dir) else {
            continue;
        };
        names.sort();
        for n in names {
            let path = dir.join(n);
            if fs.list(&path).is_ok() {
                dirs.push(path);
            } else if let Ok(f) = fs.open(&path, crate::Access::Read) {
                out.push((path, f.len().unwrap_or(0)));
            }
        }
    }
    out
}

/// Flips one seeded bit of one file of `image` (files with bytes only); returns the file and
/// the offset of the flipped byte.
fn rot(image: &SimFs, seed: u64) -> Option<(std::path::PathBuf, u64)> {
    let files: Vec<_> = all_files(&image.durable())
        .into_iter()
        .filter(|(_, len)| *len > 0)
        .collect();
    let mut rng = Rng::new(seed);
    let (path, len) = files.get(rng.below_usize(files.len().max(1)))?.clone();
    let offset = rng.below(len);
    image.flip_bit(&path, offset, (rng.below(8)) as u8).ok()?;
    Some((path, offset))
}

/// The files `quarantine/` directories hold in `fs`.
fn quarantined(fs: &DurableFs) -> Vec<std::path::PathBuf> {
    all_files(fs)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.components().any(|c| c.as_os_str() == "quarantine"))
        .collect()
}

/// True when recovery's error names the rotted file: its exact path, or (a merge output
/// that recovery renamed, as bitcask does when it rolls a committed merge forward) the same
/// name with `.data` for `.merge`.
fn names_rotted(error: &str, rotted: &std::path::Path) -> bool {
    let renamed = rotted.extension().is_some_and(|e| e == "merge");
    error.contains(&rotted.display().to_string())
        || (renamed && error.contains(&rotted.with_extension("data").display().to_string()))
}

/// True when `kept` (a file recovery added to `quarantine/`, named `<file>.<offset>.<crc>`)
/// holds the bytes of the rotted file from an offset at or before the flipped byte: the cut
/// took the damage with it.
fn keeps_rot(kept: &std::path::Path, (rotted, at): (&std::path::Path, u64)) -> bool {
    let (Some(name), Some(file)) = (kept.file_name(), rotted.file_name()) else {
        return false;
    };
    let (name, file) = (name.to_string_lossy(), file.to_string_lossy());
    let Some(rest) = name.strip_prefix(&format!("{file}.")) else {
        return false;
    };
    rest.split('.')
        .next()
        .and_then(|o| o.parse::<u64>().ok())
        .is_some_and(|offset| offset <= at)
}

fn fresh_sim<W: Workload>(w: &W, lying: bool) -> Result<SimFs, BoxError> {
    let sim = SimFs::new();
    w.prepare(&sim.durable())?;
    sim.set_lying_dir_sync(lying);
    Ok(sim)
}

/// Runs one crash point; see the [module docs](self).
fn run_point<W: Workload>(w: &W, seed: u64, cfg: &Config, k: u64) -> PointResult {
    let (mode, lying) = (cfg.mode, cfg.lying_dir_sync);
    let sim = match fresh_sim(w, lying) {
        Ok(sim) => sim,
        Err(e) => {
            return PointResult {
                recovery_error: Some(format!("prepare failed: {e}")),
                ..PointResult::default()
            };
        }
    };
    sim.schedule_crash_at(sim.op_count() + k);
    let mut acks = Vec::new();
    let outcome = w.run(&sim.durable(), seed, &mut acks);
    if let Err(e) = &outcome
        && !sim.has_crashed()
    {
        return PointResult {
            recovery_error: Some(format!("workload failed without a crash: {e}")),
            ..PointResult::default()
        };
    }
    let image = sim.crash(mode, Rng::derive(seed, k));
    image.set_lying_dir_sync(lying);
    let rotted = if cfg.bit_rot {
        rot(&image, Rng::derive(seed, k ^ 0xB17_2071))
    } else {
        None
    };
    let kept_before = quarantined(&image.durable());
    let state = match w.recover(&image.durable()) {
        Ok(s) => s,
        Err(e) => {
            // Bit rot refused, naming the damaged file: the right answer.
            if let Some((path, _)) = &rotted
                && names_rotted(&e.to_string(), path)
            {
                return PointResult {
                    rot_refused: true,
                    ..PointResult::default()
                };
            }
            return PointResult {
                recovery_error: Some(format!("recovery failed: {e}")),
                ..PointResult::default()
            };
        }
    };
    let mut verdict = w.check(seed, &acks, &state);
    let mut rot_cut_kept = false;
    if let Some((path, at)) = &rotted {
        let kept_now = quarantined(&image.durable());
        if kept_now
            .iter()
            .any(|k| !kept_before.contains(k) && keeps_rot(k, (path, *at)))
        {
            // The damage was cut as a torn tail and its bytes kept and reported (a flip in
            // records no later write or seal proved durable looks exactly like a torn
            // write): what that cut took is not a silent loss. (That a *proved* record is
            // never cut is what `tests/flip_every_byte.rs` checks, file by file.)
            rot_cut_kept = true;
            verdict = Verdict {
                acked_checked: verdict.acked_checked,
                ..Verdict::default()
            };
        }
    }
    // Recovery must have made its repairs durable: crash right after it and recover again.
    let again = image.crash(CrashMode::Strict, 0);
    again.set_lying_dir_sync(lying);
    let recovery_error = match w.recover(&again.durable()) {
        Ok(s2) if s2 == state => None,
        Ok(s2) => Some(format!(
            "second recovery disagrees: first {state:?}, then {s2:?}"
        )),
        Err(e) => Some(format!("second recovery failed: {e}")),
    };
    PointResult {
        verdict,
        recovery_error,
        rot_refused: false,
        rot_cut_kept,
    }
}

/// Counts the operations of one uninterrupted run of `seed` (after `prepare`).
pub fn count_ops<W: Workload>(w: &W, seed: u64, lying: bool) -> Result<u64, BoxError> {
    let sim = fresh_sim(w, lying)?;
    let before = sim.op_count();
    let mut acks = Vec::new();
    w.run(&sim.durable(), seed, &mut acks)?;
    Ok(sim.op_count() - before)
}

/// The crash points to try for a run of `n` operations.
pub(crate) fn points(n: u64, max: Option<usize>, seed: u64) -> Vec<u64> {
    let all = n + 1;
    match max {
        Some(m) if (m as u64) < all && m > 0 => {
            let mut rng = Rng::new(Rng::derive(seed, 0x5A17));
            let mut picked: Vec<u64> = (0..m.saturating_sub(1)).map(|_| rng.below(all)).collect();
            picked.push(n);
            picked.sort_unstable();
            picked.dedup();
            picked
        }
        _ => (0..all).collect(),
    }
}

/// Runs the harness over `cfg.seeds`; `progress` is called after each crash point with
/// (points done, points in the current seed).
pub fn run<W: Workload>(w: &W, cfg: &Config, progress: &mut dyn FnMut(u64, u64)) -> Report {
    let mut report = Report::new(w.name(), cfg.mode, cfg.lying_dir_sync);
    report.bit_rot = cfg.bit_rot;
    for &seed in &cfg.seeds {
        report.seeds += 1;
        let n = match count_ops(w, seed, cfg.lying_dir_sync) {
            Ok(n) => n,
            Err(e) => {
                report.recovery_errors += 1;
                report.first_failure.get_or_insert(Failure {
                    seed,
                    mode: cfg.mode,
                    crash_point: 0,
                    lying_dir_sync: cfg.lying_dir_sync,
                    bit_rot: cfg.bit_rot,
                    detail: format!("uninterrupted run failed: {e}"),
                });
                continue;
            }
        };
        let pts = points(n, cfg.max_points_per_seed, seed);
        let total = pts.len() as u64;
        for (i, k) in pts.into_iter().enumerate() {
            let r = run_point(w, seed, cfg, k);
            report.rot_refused += u64::from(r.rot_refused);
            report.rot_cut_kept += u64::from(r.rot_cut_kept);
            report.add(seed, k, r.verdict, r.recovery_error);
            progress(i as u64 + 1, total);
        }
    }
    report
}

/// Reruns one crash point (from a [`Failure`]) and returns its verdict, or the recovery error.
pub fn replay<W: Workload>(w: &W, failure: &Failure) -> Result<Verdict, String> {
    let cfg = Config {
        lying_dir_sync: failure.lying_dir_sync,
        bit_rot: failure.bit_rot,
        ..Config::new([failure.seed], failure.mode)
    };
    let r = run_point(w, failure.seed, &cfg, failure.crash_point);
    match r.recovery_error {
        Some(e) => Err(e),
        None => Ok(r.verdict),
    }
}
