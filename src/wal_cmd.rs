//! `durable wal ...`: the write-ahead log from the command line.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use durable_fs::DurableFs;
use wal::{Error, Options, SyncPolicy, Wal};

/// `durable wal` subcommands.
#[derive(Subcommand, Debug)]
pub enum WalCommand {
    /// Append each stdin line as one record; print `ack <lsn>` once it is durable.
    Append {
        /// The log directory (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// `always`: ack after fsync; `never`: ack after the write, sync at the end.
        #[arg(long, value_enum, default_value_t = SyncArg::Always)]
        sync: SyncArg,
        /// Rotate segments at this size.
        #[arg(long)]
        segment_bytes: Option<u64>,
    },
    /// Print `<lsn> <payload>` for every record, in order.
    Dump {
        /// The log directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Check every record; name the file and offset of any damage (exit 1).
    Verify {
        /// The log directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Remove the segments wholly below an LSN.
    Truncate {
        /// The log directory.
        #[arg(long)]
        dir: PathBuf,
        /// Keep records at or above this LSN.
        #[arg(long)]
        before: u64,
    },
}

/// `--sync` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SyncArg {
    /// fsync before acknowledging (group commit).
    Always,
    /// acknowledge after the write; sync at the end.
    Never,
}

/// What an open's recovery found, on stderr; nothing when there is nothing to say.
fn print_report(r: &wal::RecoveryReport, read_only: bool) {
    if let Some(t) = &r.truncated_tail {
        let what = if read_only {
            "left out; nothing changed (read-only)"
        } else {
            "cut"
        };
        eprintln!(
            "recovery: torn tail of {} bytes at {} offset {} ({}): {what}",
            t.len,
            t.path.display(),
            t.offset,
            t.kind
        );
    }
    for p in &r.quarantined {
        eprintln!("recovery: the cut bytes are kept in {}", p.display());
    }
    for d in &r.skipped {
        eprintln!(
            "recovery: skipped {} damaged bytes at {} offset {} ({})",
            d.len,
            d.path.display(),
            d.offset,
            d.kind
        );
    }
    for p in r.removed_torn_segments.iter().chain(&r.removed_unlisted) {
        if read_only {
            eprintln!(
                "recovery: {}: a crash leftover, not read (a read-write open removes it)",
                p.display()
            );
        } else {
            eprintln!("recovery: {}: a crash leftover, removed", p.display());
        }
    }
}

/// Runs a `durable wal` subcommand.
pub fn run(cmd: &WalCommand) -> Result<ExitCode, String> {
    let max_record_bytes = wal::format::MAX_RECORD_LIMIT;
    match cmd {
        WalCommand::Append {
            dir,
            sync,
            segment_bytes,
        } => {
            let mut opts = Options::default().with_sync(match sync {
                SyncArg::Always => SyncPolicy::Always,
                SyncArg::Never => SyncPolicy::Never,
            });
            if let Some(n) = segment_bytes {
                opts = opts.with_max_segment_bytes(*n);
            }
            let wal = Wal::open(dir, opts).map_err(|e| e.to_string())?;
            print_report(wal.recovery_report(), false);
            let stdin = io::stdin().lock();
            let mut out = io::stdout().lock();
            for line in stdin.split(b'\n') {
                let mut line = line.map_err(|e| format!("reading stdin: {e}"))?;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let lsn = wal.append(&line).map_err(|e| e.to_string())?;
                writeln!(out, "ack {lsn}")
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("writing stdout: {e}"))?;
            }
            wal.close().map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        WalCommand::Dump { dir } => {
            let (iter, report) = wal::read_only_open(&DurableFs::real(), dir, 0, max_record_bytes)
                .map_err(|e| e.to_string())?;
            print_report(&report, true);
            let mut out = io::BufWriter::new(io::stdout().lock());
            for r in iter {
                let (lsn, payload) = r.map_err(|e| e.to_string())?;
                write!(out, "{lsn} ")
                    .and_then(|()| out.write_all(&payload))
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(|e| format!("writing stdout: {e}"))?;
            }
            out.flush().map_err(|e| format!("writing stdout: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        WalCommand::Verify { dir } => {
            match wal::verify(&DurableFs::real(), dir, max_record_bytes) {
                Ok(r) => {
                    if let Some(d) = &r.torn_tail {
                        eprintln!(
                            "note: torn tail at {} offset {}, {} bytes ({}): an open would cut it",
                            d.path.display(),
                            d.offset,
                            d.len,
                            d.kind
                        );
                    }
                    for p in &r.torn_segments {
                        eprintln!(
                            "note: {}: a creation cut by a crash, holding no record (a \
                             read-write open removes it)",
                            p.display()
                        );
                    }
                    for p in &r.unlisted {
                        eprintln!(
                            "note: {}: a crash leftover the chain does not list (a read-write \
                             open removes it)",
                            p.display()
                        );
                    }
                    let lsn = |l: Option<u64>| l.map_or("-".to_owned(), |l| l.to_string());
                    println!(
                        "ok segments {} records {} first {} last {}",
                        r.segments,
                        r.records,
                        lsn(r.first_lsn),
                        lsn(r.last_lsn)
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(Error::Corruption { path, offset, kind }) => {
                    println!("corrupt {} offset {offset}: {kind}", path.display());
                    Ok(ExitCode::from(1))
                }
                Err(e @ Error::UnsupportedVersion { .. }) => {
                    println!("corrupt {e}");
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.to_string()),
            }
        }
        WalCommand::Truncate { dir, before } => {
            // Only an existing log: truncating creates nothing.
            DurableFs::real()
                .require_store(dir, &wal::STORE_KIND)
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let wal = Wal::open(dir, Options::default()).map_err(|e| e.to_string())?;
            print_report(wal.recovery_report(), false);
            let n = wal.truncate_before(*before).map_err(|e| e.to_string())?;
            wal.close().map_err(|e| e.to_string())?;
            println!("removed {n} segments");
            Ok(ExitCode::SUCCESS)
        }
    }
}
