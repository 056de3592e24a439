//! `durable torture`: the crash simulation over every engine, as a table.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::ValueEnum;
use durable_fs::sim::CrashMode;
use durable_fs::sim::concurrent::{self, ConcurrentWorkload};
use durable_fs::sim::files_workload::FilesWorkload;
use durable_fs::sim::harness::{self, Config, Report, Workload};

use crate::out::{Format, Outcome, out};

/// Arguments of `durable torture`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which workload to torture, or `all`.
    #[arg(long, value_enum, default_value_t = EngineArg::All)]
    engine: EngineArg,
    /// Workload seeds per engine and mode.
    #[arg(long, default_value_t = 16)]
    seeds: u64,
    /// First seed (replay a reported failure with `--seed S --seeds 1`); env `SEED` also works.
    #[arg(long, env = "SEED", default_value_t = 1)]
    seed: u64,
    /// Crash mode: exactly the synced state, a torn random prefix of unsynced writes, both of
    /// those, a random subset of unsynced sectors (a disk writing pages back out of order), or
    /// the synced state with one bit of one file flipped (bit rot after the last sync; the
    /// engines' single-threaded rows; a refusal naming the file, or a cut kept in quarantine,
    /// counts in `rot-refused` or `rot-cut-kept`).
    #[arg(long, value_enum, default_value_t = ModeArg::Both)]
    mode: ModeArg,
    /// Make directory fsyncs do nothing, to show what the missing directory fsync loses.
    #[arg(long)]
    lying_dir_sync: bool,
    /// At most this many crash points per seed (a seeded sample); 0 tries every point.
    #[arg(long, default_value_t = 0)]
    max_points: usize,
    /// `text` (a table), or `json`: one object a row (schema in README.md).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// The torture rows `--engine` picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum EngineArg {
    /// Every row.
    All,
    /// durable-fs's own recipes (create, rename, remove, replace).
    DurableFs,
    /// The write-ahead log.
    Wal,
    /// The write-ahead log with concurrent appenders, a truncation and a reader.
    WalMt,
    /// Bitcask.
    Bitcask,
    /// Bitcask with concurrent writers, a reader and merges.
    BitcaskMt,
    /// lsm-hash.
    LsmHash,
    /// lsm-hash with concurrent writers, a reader and compactions.
    LsmHashMt,
    /// The Raft log store (durable-raft on the WAL): appends acked by callback, votes,
    /// truncates, purges.
    RaftLog,
    /// The Raft log store with its flusher thread, a reader, and EIO at a seeded fsync.
    RaftLogMt,
    /// The Raft state machine (durable-raft on bitcask): applies, snapshots, installs.
    RaftSm,
}

impl EngineArg {
    fn name(self) -> &'static str {
        match self {
            EngineArg::All => "all",
            EngineArg::DurableFs => "durable-fs",
            EngineArg::Wal => "wal",
            EngineArg::WalMt => "wal-mt",
            EngineArg::Bitcask => "bitcask",
            EngineArg::BitcaskMt => "bitcask-mt",
            EngineArg::LsmHash => "lsm-hash",
            EngineArg::LsmHashMt => "lsm-hash-mt",
            EngineArg::RaftLog => "raft-log",
            EngineArg::RaftLogMt => "raft-log-mt",
            EngineArg::RaftSm => "raft-sm",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Strict,
    Torn,
    Both,
    Reordered,
    Rot,
}

type Runner = Box<dyn Fn(&Config, &mut dyn FnMut(u64, u64)) -> Report>;

/// Every workload the harness knows, by name: the single-threaded ones (a crash before every
/// operation of a deterministic run) and the concurrent ones (`-mt`: threads run freely, a
/// crash after every change they made to the disk, plus a rerun with EIO at a seeded fsync).
fn engines() -> Vec<(&'static str, Runner)> {
    fn runner<W: Workload + 'static>(w: W) -> Runner {
        Box::new(move |cfg, progress| harness::run(&w, cfg, progress))
    }
    fn concurrent<W: ConcurrentWorkload + 'static>(w: W) -> Runner {
        Box::new(move |cfg, progress| {
            let cfg = concurrent::Config {
                seeds: cfg.seeds.clone(),
                mode: cfg.mode,
                lying_dir_sync: cfg.lying_dir_sync,
                max_points_per_seed: cfg.max_points_per_seed,
                eio: true,
            };
            concurrent::run(&w, &cfg, progress)
        })
    }
    vec![
        ("durable-fs", runner(FilesWorkload::default())),
        ("wal", runner(wal::torture::WalWorkload::default())),
        (
            "wal-mt",
            concurrent(wal::torture_mt::ConcurrentWal::default()),
        ),
        ("bitcask", runner(bitcask::torture::workload())),
        ("bitcask-mt", concurrent(bitcask::torture::concurrent())),
        ("lsm-hash", runner(lsm_hash::torture::workload())),
        ("lsm-hash-mt", concurrent(lsm_hash::torture::concurrent())),
        (
            "raft-log",
            runner(durable_raft::torture::RaftLogWorkload::default()),
        ),
        (
            "raft-log-mt",
            concurrent(durable_raft::torture_mt::ConcurrentRaftLog::default()),
        ),
        (
            "raft-sm",
            runner(durable_raft::torture::RaftSmWorkload::default()),
        ),
    ]
}

/// Runs the command; the exit code is 1 when anything acknowledged was lost.
pub fn run(args: &Args) -> Outcome {
    let all = engines();
    let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
    let chosen: Vec<&(&str, Runner)> = if args.engine == EngineArg::All {
        all.iter().collect()
    } else {
        let picked: Vec<_> = all
            .iter()
            .filter(|(n, _)| *n == args.engine.name())
            .collect();
        if picked.is_empty() {
            return Err(format!(
                "no row {:?}; known: {}, all",
                args.engine.name(),
                names.join(", ")
            )
            .into());
        }
        picked
    };
    if args.seeds == 0 {
        return Err(String::from("--seeds must be at least 1").into());
    }
    let modes: &[CrashMode] = match args.mode {
        ModeArg::Strict | ModeArg::Rot => &[CrashMode::Strict],
        ModeArg::Torn => &[CrashMode::Torn],
        ModeArg::Both => &[CrashMode::Strict, CrashMode::Torn],
        ModeArg::Reordered => &[CrashMode::Reordered],
    };
    let bit_rot = args.mode == ModeArg::Rot;
    // Bit rot is for the engines' single-threaded rows: durable-fs's own workload has no
    // checksums to catch it, and the concurrent harness does not inject it.
    let rot_row = |name: &str| name != "durable-fs" && !name.ends_with("-mt");
    let chosen: Vec<_> = chosen
        .into_iter()
        .filter(|(n, _)| !bit_rot || rot_row(n))
        .collect();
    if chosen.is_empty() {
        return Err(format!("no bit-rot row for {:?}", args.engine.name()).into());
    }
    let mut reports = Vec::new();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>20} [{bar:30}] {pos}/{len} crash points")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    for (name, runner) in chosen {
        for &mode in modes {
            let cfg = Config {
                seeds: (args.seed..args.seed.saturating_add(args.seeds)).collect(),
                mode,
                lying_dir_sync: args.lying_dir_sync,
                max_points_per_seed: (args.max_points > 0).then_some(args.max_points),
                bit_rot,
            };
            let label = if bit_rot {
                "rot".to_owned()
            } else {
                mode.to_string()
            };
            bar.set_message(format!("{name} {label}"));
            let mut progress = |done: u64, total: u64| {
                bar.set_length(total);
                bar.set_position(done);
            };
            reports.push(runner(&cfg, &mut progress));
        }
    }
    bar.finish_and_clear();
    // A closed stdout does not change the verdict: a loss is exit 1 whoever reads the table.
    let printed = match args.format {
        Format::Text => out(print_table(&reports)),
        Format::Json => out(print_json(&reports)),
    };
    let mut lost = false;
    for r in &reports {
        if let Some(f) = &r.first_failure {
            lost = true;
            eprintln!("{} first failure: {f}", r.workload);
            eprintln!(
                "  replay: durable torture --engine {} --mode {} --seed {} --seeds 1{}{}",
                r.workload,
                if f.bit_rot {
                    "rot".to_owned()
                } else {
                    f.mode.to_string()
                },
                f.seed,
                if f.lying_dir_sync {
                    " --lying-dir-sync"
                } else {
                    ""
                },
                if r.workload.ends_with("-mt") {
                    "  (threads: the rerun draws a new interleaving)"
                } else {
                    ""
                }
            );
        } else if !r.is_clean() {
            lost = true;
        }
    }
    if lost {
        return Ok(ExitCode::from(1));
    }
    printed?;
    Ok(ExitCode::SUCCESS)
}

/// One JSON object a row: the table's columns, and the first failure (with its replay
/// command) or null.
fn print_json(reports: &[Report]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    for r in reports {
        let obj = serde_json::json!({
            "engine": r.workload,
            "mode": if r.bit_rot { "rot".to_owned() } else { r.mode.to_string() },
            "dir_sync": if r.lying_dir_sync { "lying" } else { "real" },
            "seeds": r.seeds,
            "crash_states": r.crash_states,
            "acked_checked": r.acked_checked,
            "lost": r.lost,
            "wrong": r.wrong,
            "resurrected": r.resurrected,
            "phantom_reads": r.phantom_reads,
            "recovery_errors": r.recovery_errors,
            "rot_refused": r.rot_refused,
            "rot_cut_kept": r.rot_cut_kept,
            "clean": r.is_clean(),
            "first_failure": r.first_failure.as_ref().map(|f| f.to_string()),
        });
        writeln!(stdout, "{obj}")?;
    }
    stdout.flush()
}

fn print_table(reports: &[Report]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{:<12} {:<9} {:<9} {:>6} {:>13} {:>14} {:>6} {:>6} {:>12} {:>14} {:>16} {:>11} {:>12}",
        "engine",
        "mode",
        "dir-sync",
        "seeds",
        "crash-states",
        "acked-checked",
        "lost",
        "wrong",
        "resurrected",
        "phantom-reads",
        "recovery-errors",
        "rot-refused",
        "rot-cut-kept"
    )?;
    for r in reports {
        writeln!(
            out,
            "{:<12} {:<9} {:<9} {:>6} {:>13} {:>14} {:>6} {:>6} {:>12} {:>14} {:>16} {:>11} {:>12}",
            r.workload,
            if r.bit_rot {
                "rot".to_owned()
            } else {
                r.mode.to_string()
            },
            if r.lying_dir_sync { "lying" } else { "real" },
            r.seeds,
            r.crash_states,
            r.acked_checked,
            r.lost,
            r.wrong,
            r.resurrected,
            r.phantom_reads,
            r.recovery_errors,
            r.rot_refused,
            r.rot_cut_kept
        )?;
    }
    out.flush()
}
