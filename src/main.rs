//! `durable`: the command-line tool over the workspace's storage engines.
//!
//! Thin by design: it parses arguments and calls the crates. Output contract (shared with
//! other tools): results on stdout, everything else on stderr; exit 0 on success, 1 when a
//! check fails, 2 on bad usage or an error.

#![allow(clippy::print_stdout, reason = "stdout is the command-line contract")]

mod kv_cmd;
mod torture;
mod wal_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Crash-safe embedded storage engines: tools and the crash simulation.
#[derive(Parser, Debug)]
#[command(name = "durable", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Crash simulation: run every engine's workload, cut the power at every operation,
    /// recover, and count acknowledged writes lost (must be 0).
    Torture(torture::Args),
    /// The write-ahead log: append, dump, verify, truncate.
    #[command(subcommand)]
    Wal(wal_cmd::WalCommand),
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
    /// A key-value engine: load, get, put, del, dump, merge, verify, stats.
    Kv {
        /// Which engine: needed to create a store; once one exists it is detected (and a
        /// different one given is refused).
        #[arg(long, value_enum)]
        engine: Option<kv_cmd::Engine>,
        /// The store directory.
        #[arg(long)]
        dir: std::path::PathBuf,
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
) -> Result<ExitCode, String> {
    Err("this build has no peer databases to compare against; run \
         `cargo run --release --features bench -- bench`"
        .to_owned())
}

#[cfg(feature = "bench")]
fn bench(
    quick: bool,
    smoke: bool,
    format: BenchFormat,
    dir: Option<std::path::PathBuf>,
) -> Result<ExitCode, String> {
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
    match format {
        BenchFormat::Text => print!("{}", bench::table(&rows)),
        BenchFormat::Json => print!("{}", bench::json_lines(&rows)),
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Torture(args) => torture::run(&args),
        Command::Wal(cmd) => wal_cmd::run(&cmd),
        Command::Bench {
            quick,
            smoke,
            format,
            dir,
        } => bench(quick, smoke, format, dir),
        Command::Kv {
            engine,
            dir,
            command,
        } => kv_cmd::run(engine, &dir, &command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("durable: {e}");
            ExitCode::from(2)
        }
    }
}
