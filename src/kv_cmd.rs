//! `durable kv --engine E --dir DIR ...`: the key-value engines from the command line.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use bitcask::{Bitcask, Options as BitcaskOptions, SyncPolicy as BitcaskSync, WriteBatch};
use clap::{Subcommand, ValueEnum};

use crate::wal_cmd::SyncArg;

/// The key-value engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// The Bitcask store.
    Bitcask,
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

fn bitcask_opts() -> BitcaskOptions {
    BitcaskOptions::default()
}

fn open_bitcask(dir: &Path, opts: BitcaskOptions) -> Result<Bitcask, String> {
    Bitcask::open(dir, opts).map_err(|e| e.to_string())
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
            let (key, value) = match rest.iter().position(|&b| b == b' ') {
                Some(i) => (
                    rest.get(..i).unwrap_or_default(),
                    rest.get(i + 1..).unwrap_or_default(),
                ),
                None => (rest, &b""[..]),
            };
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
    match engine {
        Engine::Bitcask => run_bitcask(dir, cmd),
    }
}

fn run_bitcask(dir: &Path, cmd: &KvCommand) -> Result<ExitCode, String> {
    let mut out = io::stdout().lock();
    let w = |r: io::Result<()>| r.map_err(|e| format!("writing stdout: {e}"));
    match cmd {
        KvCommand::Load { sync, file_bytes } => {
            let mut opts = bitcask_opts().with_sync(match sync {
                SyncArg::Always => BitcaskSync::Always,
                SyncArg::Never => BitcaskSync::Never,
            });
            if let Some(n) = file_bytes {
                opts = opts.with_max_file_bytes(*n);
            }
            let db = open_bitcask(dir, opts)?;
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
                        db.merge().map_err(|e| e.to_string())?;
                        w(writeln!(out, "merged").and_then(|()| out.flush()))?;
                        continue;
                    }
                    Line::Put(k, v) => {
                        let mut b = WriteBatch::new();
                        b.put(k, v);
                        db.write(b).map_err(|e| e.to_string())?;
                    }
                    Line::Del(k) => {
                        let mut b = WriteBatch::new();
                        b.delete(k);
                        db.write(b).map_err(|e| e.to_string())?;
                    }
                }
                n += 1;
                w(writeln!(out, "ack {n}").and_then(|()| out.flush()))?;
            }
            db.close().map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Get { key } => {
            existing_dir(dir)?;
            let db = open_bitcask(dir, bitcask_opts().with_read_only(true))?;
            match db.get(key.as_bytes()).map_err(|e| e.to_string())? {
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
            let db = open_bitcask(dir, bitcask_opts())?;
            db.put(key.as_bytes(), value.as_bytes())
                .map_err(|e| e.to_string())?;
            db.close().map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Del { key } => {
            existing_dir(dir)?;
            let db = open_bitcask(dir, bitcask_opts())?;
            if !db.delete(key.as_bytes()).map_err(|e| e.to_string())? {
                eprintln!("{key}: not found (nothing deleted)");
            }
            db.close().map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Dump => {
            existing_dir(dir)?;
            let db = open_bitcask(dir, bitcask_opts().with_read_only(true))?;
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = db
                .iter()
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            pairs.sort();
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
            existing_dir(dir)?;
            let db = open_bitcask(dir, bitcask_opts())?;
            db.merge().map_err(|e| e.to_string())?;
            db.close().map_err(|e| e.to_string())?;
            w(writeln!(out, "merged"))?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Verify => {
            existing_dir(dir)?;
            let result = Bitcask::open(dir, bitcask_opts().with_read_only(true)).and_then(|db| {
                let mut n = 0u64;
                for item in db.iter() {
                    item?;
                    n += 1;
                }
                Ok((n, db.stats().files))
            });
            match result {
                Ok((keys, files)) => {
                    w(writeln!(out, "ok keys {keys} files {files}"))?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(bitcask::Error::Corruption { path, offset, kind }) => {
                    w(writeln!(
                        out,
                        "corrupt {} offset {offset}: {kind}",
                        path.display()
                    ))?;
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.to_string()),
            }
        }
        KvCommand::Stats => {
            existing_dir(dir)?;
            let db = open_bitcask(dir, bitcask_opts().with_read_only(true))?;
            let s = db.stats();
            w(writeln!(
                out,
                "keys {}\nfiles {}\ntotal_bytes {}\ndead_bytes {}\nfragmentation {:.3}",
                s.keys, s.files, s.total_bytes, s.dead_bytes, s.fragmentation
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
