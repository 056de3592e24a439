//! `durable`: the command-line tool over the workspace's storage engines.
//!
//! Thin by design: it parses arguments and calls the crates. Output contract (shared with
//! other tools): results on stdout, everything else on stderr; exit 0 on success, 1 when a
//! check fails, 2 on bad usage or an error.

#![allow(clippy::print_stdout, reason = "stdout is the command-line contract")]

mod audit_cmd;
mod kv_cmd;
mod out;
mod raft_cmd;
mod torture;
mod wal_cmd;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use out::{Fail, Format, Outcome};

const EXAMPLES: &str = "\
Examples:
  durable torture                                  crash every engine at every operation (exit 1 on any loss)
  durable torture --engine bitcask --seeds 4 --format json
  printf 'one\\ntwo\\n' | durable wal append --dir /tmp/log
  durable wal dump --dir /tmp/log --from 2 --limit 10
  durable kv --engine bitcask --dir /tmp/kv put apple red
  durable kv --dir /tmp/kv get apple               (the engine is detected)
  durable kv --dir /tmp/kv --hex put 6120620a 00ff  (any bytes, in hex)
  durable kv --dir /tmp/kv verify --format json    (exit 0 intact, 1 damaged, 2 error)
  durable raft serve --id 1 --dir n1 --listen 127.0.0.1:21001 --peers 1=127.0.0.1:21001,2=127.0.0.1:21002,3=127.0.0.1:21003
  durable raft init --addr 127.0.0.1:21001         (once, with every node serving)
  durable raft put --addr 127.0.0.1:21001,127.0.0.1:21002 apple red

Exit codes: 0 success, 1 a check failed (or, for get, a key not found), 2 bad usage or an
error. Results go to stdout, everything else to stderr; readers end quietly with exit 0 when
their stdout is closed early (| head).";

/// Crash-safe embedded storage engines (a write-ahead log, Bitcask, a log-structured hash
/// table): their command-line tools, the crash simulation, and the benchmark.
#[derive(Parser, Debug)]
#[command(name = "durable", version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    /// More on stderr: `-v` recovery and background-work details, `-vv` debugging.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr (a recovery report that cut or quarantined data is still
    /// printed).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Crash simulation: run every engine's workload, cut the power at every operation,
    /// recover, and count acknowledged writes lost (must be 0).
    Torture(torture::Args),
    /// The write-ahead log: append, dump, verify, truncate, files.
    #[command(subcommand)]
    Wal(wal_cmd::WalCommand),
    /// Audits any program for the directory-fsync bug and its relatives: runs it under
    /// strace and reports each acknowledgement that came before what it acknowledged was
    /// durable (exit 0 clean, 1 findings, 2 error or "not measured").
    Audit(audit_cmd::AuditArgs),
    /// A replicated key-value store (openraft on durable-raft): serve, init, put, del, get,
    /// status.
    #[command(subcommand)]
    Raft(raft_cmd::RaftCommand),
    /// Quick side-by-side benchmark: our engines, their peers and the fsync floor, one table
    /// (needs the `bench` feature: `cargo run --release --features bench -- bench`).
    Bench {
        /// About a minute instead of several.
        #[arg(long)]
        quick: bool,
        /// Every case once, for a few seconds: checks that the benchmarks run (CI); the
        /// figures mean nothing.
        #[arg(long, conflicts_with = "quick")]
        smoke: bool,
        /// `text` (a table) or `json` (one object a row; schema in README.md).
        #[arg(long, value_enum, default_value_t = BenchFormat::Text)]
        format: BenchFormat,
        /// Where to put the stores (default: a fresh directory under the system temp dir,
        /// removed afterwards).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// A key-value engine: load, get, put, del, dump, merge, verify, stats, files.
    Kv {
        /// Which engine: needed to create a store; once one exists it is detected (and a
        /// different one given is refused).
        #[arg(long, value_enum)]
        engine: Option<kv_cmd::Engine>,
        /// The store directory.
        #[arg(long)]
        dir: std::path::PathBuf,
        /// Keys and values in hex, in and out (any bytes); before or after the subcommand.
        #[arg(long, global = true)]
        hex: bool,
        /// `text`, or `json` for verify, stats, dump and files (schemas in README.md).
        #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(subcommand)]
        command: kv_cmd::KvCommand,
    },
}

/// `durable bench --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BenchFormat {
    /// The table.
    Text,
    /// JSON lines, one object a row.
    Json,
}

#[cfg(not(feature = "bench"))]
fn bench(
    _quick: bool,
    _smoke: bool,
    _format: BenchFormat,
    _dir: Option<std::path::PathBuf>,
) -> Outcome {
    Err(String::from(
        "this build has no peer databases to compare against; run \
         `cargo run --release --features bench -- bench`",
    )
    .into())
}

#[cfg(feature = "bench")]
fn bench(
    quick: bool,
    smoke: bool,
    format: BenchFormat,
    dir: Option<std::path::PathBuf>,
) -> Outcome {
    use durable::bench::{self, Config};
    let remove_after = dir.is_none();
    let dir = dir.unwrap_or_else(bench::default_dir);
    if let Some(w) = bench::fsync_warning(&dir) {
        eprintln!("{w}");
    }
    let cfg = if smoke {
        Config::smoke(dir.clone())
    } else if quick {
        Config::quick(dir.clone())
    } else {
        Config::full(dir.clone())
    };
    let bar = indicatif::ProgressBar::new_spinner();
    let result = bench::run(&cfg, &mut |case| {
        bar.set_message(format!("measuring {case}"));
        bar.tick();
    });
    bar.finish_and_clear();
    if remove_after {
        bench::cleanup(&dir);
    }
    let rows = result?;
    let text = match format {
        BenchFormat::Text => bench::table(&rows),
        BenchFormat::Json => bench::json_lines(&rows),
    };
    let mut stdout = std::io::stdout().lock();
    out::out(
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush()),
    )?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Warnings by default (a recovery that cut or quarantined, a background job that
    // failed); `RUST_LOG` overrides the flags.
    // The torture and the benchmark open stores thousands of times after simulated crashes:
    // their recoveries' warnings are the experiment, not news (its table reports them), so
    // they show only with -v.
    let simulated = matches!(cli.command, Command::Torture(_) | Command::Bench { .. });
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) if simulated => log::LevelFilter::Off,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, _) => log::LevelFilter::Debug,
    };
    let mut logger = env_logger::Builder::new();
    logger.filter_level(level);
    if level == log::LevelFilter::Warn {
        // What recovery cut or quarantined is in the command's own `recovery:` lines (printed
        // whatever the level): the engines' warnings about it would say it twice.
        for module in ["wal::recovery", "bitcask::recovery", "lsm_hash::segment"] {
            logger.filter_module(module, log::LevelFilter::Error);
        }
    }
    logger.parse_default_env().format_timestamp(None).init();
    let reads_only = match &cli.command {
        Command::Torture(_) | Command::Bench { .. } => true,
        Command::Wal(cmd) => cmd.reads_only(),
        Command::Raft(cmd) => cmd.reads_only(),
        Command::Audit(_) => true,
        Command::Kv { command, .. } => command.reads_only(),
    };
    let result = match cli.command {
        Command::Torture(args) => torture::run(&args),
        Command::Wal(cmd) => wal_cmd::run(&cmd),
        Command::Raft(cmd) => raft_cmd::run(cmd),
        Command::Audit(args) => audit_cmd::run(&args),
        Command::Bench {
            quick,
            smoke,
            format,
            dir,
        } => bench(quick, smoke, format, dir),
        Command::Kv {
            engine,
            dir,
            hex,
            format,
            command,
        } => kv_cmd::run(engine, &dir, kv_cmd::Io { hex, format }, &command),
    };
    match result {
        Ok(code) => code,
        // A reader whose reader went away (`| head`): done, quietly.
        Err(Fail::Closed) if reads_only => ExitCode::SUCCESS,
        // Written with writeln!, not eprintln!, which would panic if stderr is a closed pipe
        // too (`2>&1 | head`): the exit code is the message then.
        Err(Fail::Closed) => {
            let _ = writeln!(
                std::io::stderr(),
                "durable: stdout was closed: the acknowledgements after that point were not \
                 delivered"
            );
            ExitCode::from(2)
        }
        Err(Fail::Msg(e)) => {
            let _ = writeln!(std::io::stderr(), "durable: {e}");
            ExitCode::from(2)
        }
    }
}
