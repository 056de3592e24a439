//! `durable wal ...`: the write-ahead log from the command line.

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::out::{Fail, Format, Outcome, json_bytes, line_value, out, unhex};

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
        /// Rotate segments at this size (e.g. `64MiB`).
        #[arg(long, value_parser = crate::out::parse_size)]
        segment_bytes: Option<u64>,
        /// Each line is the payload in hex (any bytes, a newline included).
        #[arg(long)]
        hex: bool,
    },
    /// Print `<lsn> <payload>` for every record, in order.
    Dump {
        /// The log directory.
        #[arg(long)]
        dir: PathBuf,
        /// Start at this LSN (default: the first record).
        #[arg(long)]
        from: Option<u64>,
        /// Print at most this many records.
        #[arg(long)]
        limit: Option<u64>,
        /// Payloads in hex (without it, a payload holding a newline stops the dump, exit 2).
        #[arg(long)]
        hex: bool,
        /// `text`, or `json`: one `{"lsn", "payload" | "payload_hex"}` object a line.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Check every record; name the file and offset of any damage (exit 1).
    Verify {
        /// The log directory.
        #[arg(long)]
        dir: PathBuf,
        /// `text`, or `json` (one object).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Remove the segments wholly below an LSN (`--before`), or every record after one
    /// (`--after`).
    #[command(group(clap::ArgGroup::new("at").required(true).args(["before", "after"])))]
    Truncate {
        /// The log directory.
        #[arg(long)]
        dir: PathBuf,
        /// Keep records at or above this LSN (whole segments below it go).
        #[arg(long)]
        before: Option<u64>,
        /// Keep records at or below this LSN (every record after it goes; their LSNs are
        /// never reused).
        #[arg(long)]
        after: Option<u64>,
    },
    /// List the files with their sizes, and the segments with their headers.
    Files {
        /// The log directory.
        #[arg(long)]
        dir: PathBuf,
        /// `text`, or `json`: one object a file.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

impl WalCommand {
    /// True for the commands that only read: their stdout closing early ends them quietly.
    pub fn reads_only(&self) -> bool {
        matches!(
            self,
            WalCommand::Dump { .. } | WalCommand::Verify { .. } | WalCommand::Files { .. }
        )
    }
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
pub fn run(cmd: &WalCommand) -> Outcome {
    let max_record_bytes = wal::format::MAX_RECORD_LIMIT;
    match cmd {
        WalCommand::Append {
            dir,
            sync,
            segment_bytes,
            hex,
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
            let mut stdout = io::stdout().lock();
            for line in stdin.split(b'\n') {
                let mut line = line.map_err(|e| format!("reading stdin: {e}"))?;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if *hex {
                    let text = std::str::from_utf8(&line)
                        .map_err(|_| String::from("a line is not hex"))?;
                    line = unhex(text.trim())?;
                }
                let lsn = wal.append(&line).map_err(|e| e.to_string())?;
                out(writeln!(stdout, "ack {lsn}").and_then(|()| stdout.flush()))?;
            }
            wal.close().map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        WalCommand::Dump {
            dir,
            from,
            limit,
            hex,
            format,
        } => {
            let from = from.unwrap_or(0);
            let (iter, report) =
                wal::read_only_open(&DurableFs::real(), dir, from, max_record_bytes)
                    .map_err(|e| e.to_string())?;
            print_report(&report, true);
            let mut stdout = io::BufWriter::new(io::stdout().lock());
            for r in iter.take(usize::try_from(limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX)) {
                let (lsn, payload) = r.map_err(|e| e.to_string())?;
                let needs_hex = || {
                    format!("record {lsn}: its payload cannot be printed on one line: use --hex")
                };
                match format {
                    Format::Text if *hex => {
                        out(writeln!(stdout, "{lsn} {}", crate::out::hex(&payload)))?;
                    }
                    Format::Text => {
                        if !line_value(&payload) {
                            out(stdout.flush())?;
                            return Err(needs_hex().into());
                        }
                        out(write!(stdout, "{lsn} ")
                            .and_then(|()| stdout.write_all(&payload))
                            .and_then(|()| stdout.write_all(b"\n")))?;
                    }
                    Format::Json => {
                        let mut obj = serde_json::Map::new();
                        obj.insert("lsn".into(), lsn.into());
                        if json_bytes(&mut obj, "payload", &payload, *hex).is_none() {
                            out(stdout.flush())?;
                            return Err(format!(
                                "record {lsn}: its payload is not UTF-8: use --hex"
                            )
                            .into());
                        }
                        out(writeln!(stdout, "{}", serde_json::Value::Object(obj)))?;
                    }
                }
            }
            out(stdout.flush())?;
            Ok(ExitCode::SUCCESS)
        }
        WalCommand::Verify { dir, format } => verify(dir, *format, max_record_bytes),
        WalCommand::Truncate { dir, before, after } => {
            // Only an existing log: truncating creates nothing.
            DurableFs::real()
                .require_store(dir, &wal::STORE_KIND)
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let wal = Wal::open(dir, Options::default()).map_err(|e| e.to_string())?;
            print_report(wal.recovery_report(), false);
            let mut stdout = io::stdout().lock();
            if let Some(lsn) = after {
                wal.truncate_after(*lsn).map_err(|e| e.to_string())?;
                wal.close().map_err(|e| e.to_string())?;
                out(writeln!(stdout, "truncated after {lsn}"))?;
            } else if let Some(lsn) = before {
                let n = wal.truncate_before(*lsn).map_err(|e| e.to_string())?;
                wal.close().map_err(|e| e.to_string())?;
                out(writeln!(stdout, "removed {n} segments"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        WalCommand::Files { dir, format } => files(dir, *format),
    }
}

/// `wal verify`.
fn verify(dir: &Path, format: Format, max_record_bytes: u32) -> Outcome {
    let mut stdout = io::stdout().lock();
    let lsn = |l: Option<u64>| l.map_or("-".to_owned(), |l| l.to_string());
    let corrupt =
        |stdout: &mut io::StdoutLock<'_>, path: String, offset: Option<u64>, kind: String| {
            let line = match format {
                Format::Text => match offset {
                    Some(o) => format!("corrupt {path} offset {o}: {kind}"),
                    None => format!("corrupt {kind}"),
                },
                Format::Json => serde_json::json!({
                    "status": "corrupt", "path": path, "offset": offset, "kind": kind,
                })
                .to_string(),
            };
            // Damage is exit 1 whether or not anyone still reads stdout.
            match out(writeln!(stdout, "{line}")) {
                Ok(()) | Err(Fail::Closed) => Ok(ExitCode::from(1)),
                Err(e) => Err(e),
            }
        };
    match wal::verify(&DurableFs::real(), dir, max_record_bytes) {
        Ok(r) => {
            let mut notes = Vec::new();
            if let Some(d) = &r.torn_tail {
                notes.push(format!(
                    "note: torn tail at {} offset {}, {} bytes ({}): an open would cut it",
                    d.path.display(),
                    d.offset,
                    d.len,
                    d.kind
                ));
            }
            for p in &r.torn_segments {
                notes.push(format!(
                    "note: {}: a creation cut by a crash, holding no record (a read-write open \
                     removes it)",
                    p.display()
                ));
            }
            for p in &r.unlisted {
                notes.push(format!(
                    "note: {}: a crash leftover the chain does not list (a read-write open \
                     removes it)",
                    p.display()
                ));
            }
            for n in &notes {
                eprintln!("{n}");
            }
            let line = match format {
                Format::Text => format!(
                    "ok segments {} records {} first {} last {}",
                    r.segments,
                    r.records,
                    lsn(r.first_lsn),
                    lsn(r.last_lsn)
                ),
                Format::Json => serde_json::json!({
                    "status": "ok",
                    "segments": r.segments,
                    "records": r.records,
                    "first_lsn": r.first_lsn,
                    "last_lsn": r.last_lsn,
                    "torn_tail": r.torn_tail.as_ref().map(|d| serde_json::json!({
                        "path": d.path.display().to_string(),
                        "offset": d.offset,
                        "len": d.len,
                        "kind": d.kind.to_string(),
                    })),
                    "notes": notes,
                })
                .to_string(),
            };
            out(writeln!(stdout, "{line}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Corruption { path, offset, kind }) => corrupt(
            &mut stdout,
            path.display().to_string(),
            Some(offset),
            kind.to_string(),
        ),
        Err(e @ Error::UnsupportedVersion { .. }) => {
            corrupt(&mut stdout, String::new(), None, e.to_string())
        }
        Err(e) => Err(e.to_string().into()),
    }
}

/// `wal files`: every file of the log with its size; segments with their decoded headers.
fn files(dir: &Path, format: Format) -> Outcome {
    let fs = DurableFs::real();
    fs.require_store(dir, &wal::STORE_KIND)
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut names = fs.list(dir).map_err(|e| e.to_string())?;
    names.sort();
    let mut stdout = io::BufWriter::new(io::stdout().lock());
    for name in names {
        let path = dir.join(&name);
        let entry = fs.kind(&path).map_err(|e| e.to_string())?;
        if entry != Some(durable_fs::EntryKind::File) {
            // A directory (quarantine/), or an entry that went meanwhile.
            if entry == Some(durable_fs::EntryKind::Dir) {
                let line = crate::out::file_line(format, &name, None, "directory", Vec::new());
                out(writeln!(stdout, "{line}"))?;
            }
            continue;
        }
        let file = fs
            .open(&path, durable_fs::Access::Read)
            .map_err(|e| e.to_string())?;
        let bytes = file.len().map_err(|e| e.to_string())?;
        let mut fields: Vec<(&str, serde_json::Value)> = Vec::new();
        let kind = if wal::format::parse_segment_name(&name).is_some() {
            let mut h = [0u8; wal::format::SEGMENT_HEADER_LEN];
            let read = file.read_exact_at(&mut h, 0);
            match read.ok().map(|()| wal::format::SegmentHeader::decode(&h)) {
                Some(Ok(h)) => {
                    fields.push(("version", h.version.into()));
                    fields.push(("first_lsn", h.first_lsn.into()));
                    fields.push(("salt", format!("{:08x}", h.salt).into()));
                    "segment"
                }
                Some(Err(e)) => {
                    fields.push(("header", format!("{e:?}").into()));
                    "segment"
                }
                None => {
                    fields.push(("header", "Short".into()));
                    "segment"
                }
            }
        } else {
            match name.as_str() {
                "CHAIN" => "chain",
                "IDENTITY" => "identity",
                "LOCK" => "lock",
                _ => "other",
            }
        };
        let line = crate::out::file_line(format, &name, Some(bytes), kind, fields);
        out(writeln!(stdout, "{line}"))?;
    }
    out(stdout.flush())?;
    Ok(ExitCode::SUCCESS)
}
