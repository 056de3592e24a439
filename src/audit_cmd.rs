//! `durable audit`: runs a program under strace and reports each acknowledgement that came
//! before what it acknowledged was durable (the lint of `durable-audit`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use durable_audit::capture;
use durable_audit::lint::{self, AckSpec, Config};
use durable_audit::trace;
use durable_fs::DurableFs;

use crate::out::{Fail, Format, Outcome, out};

/// `durable audit [--watch DIR]... [--ack SPEC] [--from-trace F] [--save-trace F] -- CMD ARGS...`
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// A directory whose entries must be durable at each acknowledgement (repeatable;
    /// default: the working directory; `/` is refused).
    #[arg(long)]
    watch: Vec<PathBuf>,
    /// What an acknowledgement is (repeatable): `line:REGEX`, a line on the program's stdout
    /// matching it (default `line:^ack\b`); `exit`, the program's exit with status 0; `fd:N`,
    /// any write to descriptor N.
    #[arg(long)]
    ack: Vec<String>,
    /// Audit a trace saved by --save-trace instead of running a program.
    #[arg(long, conflicts_with = "cmd")]
    from_trace: Option<PathBuf>,
    /// Keep the trace (strace's output behind our header) in this file.
    #[arg(long)]
    save_trace: Option<PathBuf>,
    /// Make the N-th fsync/fdatasync of the run fail with EIO (strace's fault injection), to
    /// check that the program stops acknowledging after it (D005).
    #[arg(long, value_name = "N", conflicts_with = "from_trace")]
    inject_fsync_eio: Option<u64>,
    /// `text`, or `json` (one object a line: each finding, then a summary).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Explore crash states too: replay the run into a simulated filesystem, cut the power
    /// at each acknowledgement (see --points), and run --check on each state.
    #[arg(long, requires = "check")]
    explore: bool,
    /// The check run on each crash state (with `sh -c`): `{dir}` is the state's copy of the
    /// watched directory; the acknowledgements so far are in the file $DURABLE_AUDIT_ACKED
    /// (one a line), their count in $DURABLE_AUDIT_ACKS. Exit 0 when the state holds what
    /// was acknowledged.
    #[arg(long, requires = "explore")]
    check: Option<String>,
    /// Crash modes (comma-separated): strict (what was synced), torn (plus a prefix of
    /// what was not, torn sectors), reordered (plus any subset of the unsynced sectors).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "strict")]
    crash: Vec<CrashArg>,
    /// Where the power is cut: after each acknowledgement (`acks`), each sync too
    /// (`syncs`, the default: every state a strict crash can leave), or every operation the
    /// model replays (`all`: what torn and reordered crashes need to vary).
    #[arg(long, value_enum, default_value_t = PointsArg::Syncs)]
    points: PointsArg,
    /// States per crash point in the torn and reordered modes (seeds).
    #[arg(long, default_value_t = 4)]
    seeds: u64,
    /// Most distinct crash states checked (the rest are counted as skipped).
    #[arg(long, default_value_t = 10_000)]
    max_states: usize,
    /// Checks run at once (default: the number of CPUs).
    #[arg(long)]
    jobs: Option<usize>,
    /// Seconds a check may run before it is killed and counted as failed.
    #[arg(long, default_value_t = 60)]
    check_timeout: u64,
    /// Bytes of each write strace keeps (default 64 KiB, 1 MiB with --explore): a longer
    /// write to the acknowledgement channel, or with --explore to a watched file, is refused
    /// as not measured.
    #[arg(long)]
    max_write: Option<usize>,
    /// Failed crash states kept on disk for inspection.
    #[arg(long, default_value_t = 10)]
    keep_failed: usize,
    /// The program and its arguments (after `--`).
    #[arg(last = true)]
    cmd: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum CrashArg {
    Strict,
    Torn,
    Reordered,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum PointsArg {
    Acks,
    Syncs,
    All,
}

fn json_str(s: &str) -> serde_json::Value {
    serde_json::Value::String(s.to_owned())
}

/// Runs `durable audit`.
pub fn run(args: &AuditArgs) -> Outcome {
    let fs = DurableFs::real();
    let mut cfg = Config {
        watch: args
            .watch
            .iter()
            .map(|w| capture::resolve(&fs, w))
            .collect(),
        ack: AckSpec::parse(&args.ack).map_err(Fail::Msg)?,
        ..Config::default()
    };
    let mut live_end = None;
    let text = match &args.from_trace {
        Some(path) => {
            let bytes = fs.read(path).map_err(|e| Fail::Msg(e.to_string()))?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            capture::read_header(&text, &mut cfg).map_err(|e| Fail::Msg(e.to_string()))?;
            text
        }
        None => {
            if args.cmd.is_empty() {
                return Err(Fail::Msg(
                    "nothing to audit: give a program after `--`, or --from-trace".to_owned(),
                ));
            }
            if cfg.watch.is_empty() {
                cfg.watch.push(capture::resolve(&fs, &PathBuf::from(".")));
            }
            let max_write = args
                .max_write
                .unwrap_or(if args.explore { 1 << 20 } else { 64 << 10 });
            let (text, code) = capture::run(
                &fs,
                &mut cfg,
                &args.cmd,
                args.inject_fsync_eio,
                args.explore,
                max_write,
            )
            .map_err(|e| Fail::Msg(e.to_string()))?;
            live_end = Some(code.map_or("killed by a signal".to_owned(), |c| format!("exit {c}")));
            text
        }
    };
    if cfg.watch.is_empty() {
        cfg.watch.push(capture::resolve(&fs, &PathBuf::from(".")));
    }
    if cfg.watch.iter().any(|w| w.parent().is_none()) {
        return Err(Fail::Msg(
            "--watch / is refused: name the program's data directories".to_owned(),
        ));
    }
    if let Some(save) = &args.save_trace {
        fs.atomic_replace(save, text.as_bytes())
            .map_err(|e| Fail::Msg(e.to_string()))?;
    }
    let events = trace::parse(&text).map_err(|e| Fail::Msg(e.to_string()))?;
    let mut report = lint::lint(&events, &cfg);
    if live_end.is_some() {
        // strace -qq leaves the exit out of the trace; strace's own status is the program's.
        report.end = live_end;
    }
    if let Some((line, what)) = report.blind_spots.first() {
        return Err(Fail::Msg(format!(
            "not measured: {what} at trace line {line} (writes the audit cannot see)"
        )));
    }
    if report.acks == 0 && report.syncs == 0 {
        return Err(Fail::Msg(
            "not measured: the program acknowledged nothing and synced nothing".to_owned(),
        ));
    }
    let mut stdout = std::io::stdout().lock();
    for f in &report.findings {
        let line = match args.format {
            Format::Text => format!("{f}\n     fix: {}\n", f.fix()),
            Format::Json => {
                let mut o = serde_json::Map::new();
                o.insert("v".into(), 1.into());
                o.insert("rule".into(), json_str(f.rule));
                o.insert("severity".into(), json_str(f.severity));
                o.insert("line".into(), f.line.into());
                o.insert("pid".into(), f.pid.into());
                o.insert("syscall".into(), json_str(&f.syscall));
                o.insert("op".into(), json_str(f.op));
                o.insert("dir".into(), json_str(&f.dir.to_string_lossy()));
                o.insert("name".into(), json_str(&f.name));
                if let Some((n, text)) = &f.ack {
                    let mut a = serde_json::Map::new();
                    a.insert("line".into(), (*n).into());
                    a.insert("text".into(), json_str(text));
                    o.insert("ack".into(), a.into());
                }
                o.insert("fix".into(), json_str(&f.fix()));
                format!("{}\n", serde_json::Value::Object(o))
            }
        };
        out(stdout.write_all(line.as_bytes()))?;
    }
    let summary = match args.format {
        Format::Text => format!(
            "audit: {} syscalls, {} processes, {} acks, {} syncs, {} findings ({} errors); the program: {}\n",
            report.syscalls,
            report.processes,
            report.acks,
            report.syncs,
            report.findings.len(),
            report.errors(),
            report.end.as_deref().unwrap_or("end not traced")
        ),
        Format::Json => format!(
            "{}\n",
            serde_json::json!({"v": 1, "summary": {"syscalls": report.syscalls,
                "processes": report.processes, "acks": report.acks, "syncs": report.syncs,
                "findings": report.findings.len(), "errors": report.errors(),
                "end": report.end}})
        ),
    };
    out(stdout
        .write_all(summary.as_bytes())
        .and_then(|()| stdout.flush()))?;
    let mut failed = 0;
    if args.explore {
        drop(stdout);
        failed = run_explore(args, &events, &cfg)?;
    }
    Ok(if report.errors() == 0 && failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Explores the run's crash states and prints each failure; returns how many failed.
fn run_explore(args: &AuditArgs, events: &[trace::Event], cfg: &Config) -> Result<usize, Fail> {
    use durable_audit::explore::{self, Options, Points};
    use durable_fs::sim::CrashMode;
    let not_measured = |e: explore::ExploreError| Fail::Msg(e.to_string());
    let initial = explore::initial(cfg).map_err(not_measured)?;
    let mut modes: Vec<CrashMode> = args
        .crash
        .iter()
        .map(|c| match c {
            CrashArg::Strict => CrashMode::Strict,
            CrashArg::Torn => CrashMode::Torn,
            CrashArg::Reordered => CrashMode::Reordered,
        })
        .collect();
    modes.dedup();
    let opts = Options {
        check: args.check.clone().unwrap_or_default(),
        points: match args.points {
            PointsArg::Acks => Points::Acks,
            PointsArg::Syncs => Points::Syncs,
            PointsArg::All => Points::All,
        },
        modes,
        seeds: args.seeds,
        max_states: args.max_states,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from)),
        timeout: std::time::Duration::from_secs(args.check_timeout),
        scratch: std::env::temp_dir(),
        keep_failed: args.keep_failed,
    };
    if opts.points != Points::All && opts.modes.iter().any(|m| *m != CrashMode::Strict) {
        eprintln!(
            "durable: note: torn and reordered crashes vary what was unsynced at the crash \
             point; with --points acks or syncs little is (use --points all)"
        );
    }
    let outcome = explore::explore(events, cfg, &initial, &opts).map_err(not_measured)?;
    for dir in &outcome.leftovers {
        eprintln!(
            "durable: could not remove the scratch directory {} (the check left something in it)",
            dir.display()
        );
    }
    if outcome.skipped > 0 {
        eprintln!(
            "durable: {} crash states were not checked (--max-states {}): no pass is claimed",
            outcome.skipped, opts.max_states
        );
    }
    let mut stdout = std::io::stdout().lock();
    for f in &outcome.failures {
        let line = match args.format {
            Format::Text => format!("{f}\n"),
            Format::Json => {
                let pending: Vec<serde_json::Value> = f
                    .pending
                    .iter()
                    .map(|(p, lost)| {
                        serde_json::json!({"line": p.line, "pid": p.pid, "syscall": p.syscall,
                            "op": p.op, "path": p.path.to_string_lossy(),
                            "from": p.from.as_ref().map(|x| x.to_string_lossy()),
                            "lost": lost})
                    })
                    .collect();
                format!(
                    "{}\n",
                    serde_json::json!({"v": 1, "crash": {"line": f.point.line,
                        "at": f.point.what, "acks": f.point.acks, "mode": f.mode.to_string(),
                        "seed": f.seed, "exit": f.exit, "output": f.output,
                        "pending": pending, "more_pending": f.point.more,
                        "kept": f.kept.as_ref().map(|k| k.to_string_lossy())}})
                )
            }
        };
        out(stdout.write_all(line.as_bytes()))?;
    }
    let summary = match args.format {
        Format::Text => format!(
            "explore: {} crash points, {} states ({} distinct, {} checked, {} skipped), {} failed\n",
            outcome.points,
            outcome.states,
            outcome.distinct,
            outcome.checked,
            outcome.skipped,
            outcome.failures.len()
        ),
        Format::Json => format!(
            "{}\n",
            serde_json::json!({"v": 1, "explore": {"points": outcome.points,
                "states": outcome.states, "distinct": outcome.distinct,
                "checked": outcome.checked, "skipped": outcome.skipped,
                "failed": outcome.failures.len()}})
        ),
    };
    out(stdout
        .write_all(summary.as_bytes())
        .and_then(|()| stdout.flush()))?;
    if outcome.failures.is_empty() && outcome.skipped > 0 {
        return Err(Fail::Msg(format!(
            "not measured: {} of {} distinct crash states were checked (raise --max-states)",
            outcome.checked, outcome.distinct
        )));
    }
    Ok(outcome.failures.len())
}
