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

/// Every live `(key, value)`.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// What the command line needs from an engine.
trait Store {
    fn apply(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), String>;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    fn delete(&self, key: &[u8]) -> Result<bool, String>;
    /// Every live pair (checksums verified as they are read).
    fn pairs(&self) -> Result<Pairs, Corrupt>;
    fn merge(&self) -> Result<(), String>;
    fn stats(&self) -> Vec<(&'static str, String)>;
    fn close(self: Box<Self>) -> Result<(), String>;
}

/// A read error: damage (exit 1, named file and offset) or anything else (exit 2).
enum Corrupt {
    At(String),
    Other(String),
}

impl Store for Bitcask {
    fn apply(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let mut b = WriteBatch::new();
        match value {
            Some(v) => b.put(key, v),
            None => b.delete(key),
        }
        self.write(b).map(|_| ()).map_err(|e| e.to_string())
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Bitcask::get(self, key).map_err(|e| e.to_string())
    }
    fn delete(&self, key: &[u8]) -> Result<bool, String> {
        Bitcask::delete(self, key).map_err(|e| e.to_string())
    }
    fn pairs(&self) -> Result<Pairs, Corrupt> {
        self.iter().collect::<Result<_, _>>().map_err(|e| match e {
            bitcask::Error::Corruption { path, offset, kind } => {
                Corrupt::At(format!("{} offset {offset}: {kind}", path.display()))
            }
            other => Corrupt::Other(other.to_string()),
        })
    }
    fn merge(&self) -> Result<(), String> {
        Bitcask::merge(self).map(|_| ()).map_err(|e| e.to_string())
    }
    fn stats(&self) -> Vec<(&'static str, String)> {
        let s = Bitcask::stats(self);
        vec![
            ("keys", s.keys.to_string()),
            ("files", s.files.to_string()),
            ("total_bytes", s.total_bytes.to_string()),
            ("dead_bytes", s.dead_bytes.to_string()),
            ("fragmentation", format!("{:.3}", s.fragmentation)),
        ]
    }
    fn close(self: Box<Self>) -> Result<(), String> {
        Bitcask::close(*self).map_err(|e| e.to_string())
    }
}

impl Store for lsm_hash::LsmHash {
    fn apply(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        self.write(&[(key.to_vec(), value.map(<[u8]>::to_vec))])
            .map_err(|e| e.to_string())
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        lsm_hash::LsmHash::get(self, key).map_err(|e| e.to_string())
    }
    fn delete(&self, key: &[u8]) -> Result<bool, String> {
        lsm_hash::LsmHash::delete(self, key).map_err(|e| e.to_string())
    }
    fn pairs(&self) -> Result<Pairs, Corrupt> {
        self.iter().collect::<Result<_, _>>().map_err(|e| match e {
            lsm_hash::Error::Corruption { path, offset, kind } => {
                Corrupt::At(format!("{} offset {offset}: {kind}", path.display()))
            }
            other => Corrupt::Other(other.to_string()),
        })
    }
    fn merge(&self) -> Result<(), String> {
        self.compact_now().map(|_| ()).map_err(|e| e.to_string())
    }
    fn stats(&self) -> Vec<(&'static str, String)> {
        let segs = self.segments();
        vec![
            ("keys", self.iter().count().to_string()),
            ("segments", segs.len().to_string()),
            (
                "total_bytes",
                segs.iter().map(|s| s.bytes).sum::<u64>().to_string(),
            ),
        ]
    }
    fn close(self: Box<Self>) -> Result<(), String> {
        lsm_hash::LsmHash::close(*self).map_err(|e| e.to_string())
    }
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

fn open(engine: Engine, dir: &Path, mode: Mode) -> Result<Box<dyn Store>, Corrupt> {
    let (sync, file_bytes, read_only) = match mode {
        Mode::Write { sync, file_bytes } => (sync, file_bytes, false),
        Mode::Read => (SyncArg::Always, None, true),
    };
    let policy = match sync {
        SyncArg::Always => BitcaskSync::Always,
        SyncArg::Never => BitcaskSync::Never,
    };
    match engine {
        Engine::Bitcask => {
            let mut opts = BitcaskOptions::default()
                .with_sync(policy)
                .with_read_only(read_only);
            if let Some(n) = file_bytes {
                opts = opts.with_max_file_bytes(n);
            }
            match Bitcask::open(dir, opts) {
                Ok(db) => Ok(Box::new(db)),
                Err(bitcask::Error::Corruption { path, offset, kind }) => Err(Corrupt::At(
                    format!("{} offset {offset}: {kind}", path.display()),
                )),
                Err(e) => Err(Corrupt::Other(e.to_string())),
            }
        }
        Engine::LsmHash => {
            let mut opts = lsm_hash::Options::default().with_sync(policy);
            if let Some(n) = file_bytes {
                opts = opts.with_max_segment_bytes(n);
            }
            match lsm_hash::LsmHash::open(dir, opts) {
                Ok(db) => Ok(Box::new(db)),
                Err(lsm_hash::Error::Corruption { path, offset, kind }) => Err(Corrupt::At(
                    format!("{} offset {offset}: {kind}", path.display()),
                )),
                Err(e) => Err(Corrupt::Other(e.to_string())),
            }
        }
    }
}

fn open_or_fail(engine: Engine, dir: &Path, mode: Mode) -> Result<Box<dyn Store>, String> {
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
                        db.merge()?;
                        w(writeln!(out, "merged").and_then(|()| out.flush()))?;
                        continue;
                    }
                    Line::Put(k, v) => db.apply(k, Some(v))?,
                    Line::Del(k) => db.apply(k, None)?,
                }
                n += 1;
                w(writeln!(out, "ack {n}").and_then(|()| out.flush()))?;
            }
            db.close()?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Get { key } => {
            let db = open_or_fail(engine, dir, Mode::Read)?;
            match db.get(key.as_bytes())? {
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
            db.apply(key.as_bytes(), Some(value.as_bytes()))?;
            db.close()?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Del { key } => {
            let db = open_or_fail(engine, dir, write_mode)?;
            if !db.delete(key.as_bytes())? {
                eprintln!("{key}: not found (nothing deleted)");
            }
            db.close()?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Dump => {
            let db = open_or_fail(engine, dir, Mode::Read)?;
            let mut pairs = db.pairs().map_err(|e| match e {
                Corrupt::At(s) => format!("corrupt {s}"),
                Corrupt::Other(s) => s,
            })?;
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
            let db = open_or_fail(engine, dir, write_mode)?;
            db.merge()?;
            db.close()?;
            w(writeln!(out, "merged"))?;
            Ok(ExitCode::SUCCESS)
        }
        KvCommand::Verify => {
            let checked = open(engine, dir, Mode::Read).and_then(|db| db.pairs().map(|p| p.len()));
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
            for (name, value) in db.stats() {
                w(writeln!(out, "{name} {value}"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
