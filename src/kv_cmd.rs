//! `durable kv --engine E --dir DIR ...`: the key-value engines from the command line.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use bitcask::Bitcask;
use clap::{Subcommand, ValueEnum};
use kv_core::{KvStore, SyncPolicy, WriteBatch};
use lsm_hash::LsmHash;

use crate::wal_cmd::SyncArg;

/// The key-value engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// The Bitcask store.
    Bitcask,
    /// The DDIA log-structured hash table.
    LsmHash,
}

/// `durable kv` subcommands.
#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Read `put KEY VALUE` / `del KEY` / `merge` lines from stdin; print `ack <n>` once each
    /// is durable (`merged` after a merge).
    Load {
        /// `always`: ack after fsync; `never`: ack after the write, sync at the end.
        #[arg(long, value_enum, default_value_t = SyncArg::Always)]
        sync: SyncArg,
        /// Rotate data files at this size.
        #[arg(long)]
        file_bytes: Option<u64>,
    },
    /// Print the value of KEY (exit 1 if it is not there).
    Get {
        /// The key.
        key: String,
    },
    /// Set KEY to VALUE, durably.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete KEY, durably.
    Del {
        /// The key.
        key: String,
    },
    /// Print `KEY VALUE` for every live key, sorted by key.
    Dump,
    /// Merge / compact now.
    Merge,
    /// Check every file and record; name the file and offset of any damage (exit 1).
    Verify,
    /// Print counts and sizes.
    Stats,
}

/// A read error: damage (exit 1, named file and offset) or anything else (exit 2).
enum Corrupt {
    At(String),
    Other(String),
}

impl From<kv_core::Error> for Corrupt {
    fn from(e: kv_core::Error) -> Self {
        match e {
            kv_core::Error::Corruption { path, offset, kind } => {
                Corrupt::At(format!("{} offset {offset}: {kind}", path.display()))
            }
            other => Corrupt::Other(other.to_string()),
        }
    }
}

/// One put or delete as a batch.
fn batch(key: &[u8], value: Option<&[u8]>) -> WriteBatch {
    let mut b = WriteBatch::new();
    match value {
        Some(v) => b.put(key, v),
        None => b.delete(key),
    }
    b
}

fn err(e: kv_core::Error) -> String {
    e.to_string()
}

/// How a command opens the store.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Writes, with durability per `--sync` (default always).
    Write {
        sync: SyncArg,
        file_bytes: Option<u64>,
    },
    /// Reads only: without the lock where the engine allows it.
    Read,
}

/// Opens the store with the same options for either engine: read commands open read-only
/// (no lock, nothing written).
fn open(engine: Engine, dir: &Path, mode: Mode) -> Result<Box<dyn KvStore>, Corrupt> {
    let (sync, file_bytes, read_only) = match mode {
        Mode::Write { sync, file_bytes } => (sync, file_bytes, false),
        Mode::Read => (SyncArg::Always, None, true),
    };
    let policy = match sync {
        SyncArg::Always => SyncPolicy::Always,
        SyncArg::Never => SyncPolicy::Never,
    };
    Ok(match engine {
        Engine::Bitcask => {
            let mut opts = bitcask::Options::default()
                .with_sync(policy)
                .with_read_only(read_only);
            if let Some(n) = file_bytes {
                opts = opts.with_max_file_bytes(n);
            }
            Box::new(Bitcask::open(dir, opts)?)
        }
        Engine::LsmHash => {
            let mut opts = lsm_hash::Options::default()
                .with_sync(policy)
                .with_read_only(read_only);
            if let Some(n) = file_bytes {
                opts = opts.with_max_file_bytes(n);
            }
            Box::new(LsmHash::open(dir, opts)?)
        }
    })
}

fn open_or_fail(engine: Engine, dir: &Path, mode: Mode) -> Result<Box<dyn KvStore>, String> {
    open(engine, dir, mode).map_err(|e| match e {
        Corrupt::At(s) => format!("corrupt {s}"),
        Corrupt::Other(s) => s,
    })
}

fn existing_dir(dir: &Path) -> Result<(), String> {
    match durable_fs::DurableFs::real().kind(dir) {
        Ok(Some(durable_fs::EntryKind::Dir)) => Ok(()),
        Ok(_) => Err(format!("{}: no such directory", dir.display())),
        Err(e) => Err(e.to_string()),
    }
}

/// One parsed `load` line.
enum Line<'a> {
    Put(&'a [u8], &'a [u8]),
    Del(&'a [u8]),
    Merge,
}

fn parse_line(line: &[u8]) -> Result<Line<'_>, String> {
    let bad = || {
        format!(
            "bad line {:?}: want `put KEY VALUE`, `del KEY` or `merge`",
            String::from_utf8_lossy(line)
        )
    };
    if line == b"merge" {
        return Ok(Line::Merge);
    }
    let (cmd, rest) = line.split_at(line.iter().position(|&b| b == b' ').ok_or_else(bad)?);
    let rest = rest.get(1..).unwrap_or_default();
    match cmd {
        b"put" => {
            // `put KEY VALUE`; `put KEY ` (the space, then nothing) is the empty value. A
            // `put KEY` without the space is a truncated line, not an empty value: refused.
            let i = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
            let (key, value) = (
                rest.get(..i).unwrap_or_default(),
                rest.get(i + 1..).unwrap_or_default(),
            );
            if key.is_empty() {
                return Err(bad());
            }
            Ok(Line::Put(key, value))
        }
        b"del" if !rest.is_empty() && !rest.contains(&b' ') => Ok(Line::Del(rest)),
        _ => Err(bad()),
    }
}

/// Runs a `durable kv` subcommand.
pub fn run(engine: Engine, dir: &Path, cmd: &KvCommand) -> Result<ExitCode, String> {
    let mut out = io::stdout().lock();
    let w = |r: io::Result<()>| r.map_err(|e| format!("writing stdout: {e}"));
    let write_mode = Mode::Write {
        sync: SyncArg::Always,
        file_bytes: None,
    };
    if !matches!(cmd, KvCommand::Load { .. } | KvCommand::Put { .. }) {
        existing_dir(dir)?;
    }
    match cmd {
        KvCommand::Load { sync, file_bytes } => {
            let db = open_or_fail(
                engine,
                dir,
                Mode::Write {
                    sync: *sync,
                    file_bytes: *file_bytes,
                },
            )?;
            let mut n = 0u64;
            for line in io::stdin().lock().split(b'\n') {
                let mut line = line.map_err(|e| format!("reading stdin: {e}"))?;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.is_empty() {
                    continue;
                }
                match parse_line(&line)? {
                    Line::Merge => {
                        db.compact().map_err(err)?;
                        w(writeln!(out, "merged").and_then(|()| out.flush()))?;
                        continue;
                    }
                    Line::Put(k, v) => db.write(batch(k, Some(v))).map_err(err)?,
                    Line::Del(k) => db.write(batch(k, None)).map_err(err)?,
                }
                n += 1;
                w(writeln!(out, "ack {n}").and_then(|()| out.flush()))?;
            }
            db.close().map_err(err)?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Get { key } => {
            let db = open_or_fail(engine, dir, Mode::Read)?;
            match db.get(key.as_bytes()).map_err(err)? {
                Some(v) => {
                    w(out.write_all(&v).and_then(|()| out.write_all(b"\n")))?;
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("{key}: not found");
                    Ok(ExitCode::from(1))
                }
            }
        }
        KvCommand::Put { key, value } => {
            let db = open_or_fail(engine, dir, write_mode)?;
            db.write(batch(key.as_bytes(), Some(value.as_bytes())))
                .map_err(err)?;
            db.close().map_err(err)?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Del { key } => {
            let db = open_or_fail(engine, dir, write_mode)?;
            if !db.delete(key.as_bytes()).map_err(err)? {
                eprintln!("{key}: not found (nothing deleted)");
            }
            db.close().map_err(err)?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Dump => {
            let db = open_or_fail(engine, dir, Mode::Read)?;
            let pairs = db.pairs().map_err(|e| match Corrupt::from(e) {
                Corrupt::At(s) => format!("corrupt {s}"),
                Corrupt::Other(s) => s,
            })?;
            let mut out = io::BufWriter::new(out);
            for (k, v) in pairs {
                w(out
                    .write_all(&k)
                    .and_then(|()| out.write_all(b" "))
                    .and_then(|()| out.write_all(&v))
                    .and_then(|()| out.write_all(b"\n")))?;
            }
            w(out.flush())?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Merge => {
            let db = open_or_fail(engine, dir, write_mode)?;
            db.compact().map_err(err)?;
            db.close().map_err(err)?;
            w(writeln!(out, "merged"))?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Verify => {
            let checked = open(engine, dir, Mode::Read)
                .and_then(|db| db.pairs().map(|p| p.len()).map_err(Corrupt::from));
            match checked {
                Ok(keys) => {
                    w(writeln!(out, "ok keys {keys}"))?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(Corrupt::At(s)) => {
                    w(writeln!(out, "corrupt {s}"))?;
                    Ok(ExitCode::from(1))
                }
                Err(Corrupt::Other(s)) => Err(s),
            }
        }
        KvCommand::Stats => {
            let db = open_or_fail(engine, dir, Mode::Read)?;
            let s = db.stats().map_err(err)?;
            let lines = [
                ("keys", s.keys.to_string()),
                ("files", s.files.to_string()),
                ("total_bytes", s.total_bytes.to_string()),
                ("dead_bytes", s.dead_bytes.to_string()),
                ("fragmentation", format!("{:.3}", s.fragmentation())),
            ];
            for (name, value) in lines {
                w(writeln!(out, "{name} {value}"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
